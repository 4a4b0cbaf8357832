"""Shared by the tool tests: load a ``tools/`` script as a module, check one-line errors."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_tool(relative_path):
    """``tools/<relative_path>`` (e.g. ``'train.py'``, ``'deployment/pytorch2onnx.py'``)
    imported as a module, so its functions can be called in-process."""
    path = ROOT / 'tools' / relative_path
    name = 'mmfec_tool_' + relative_path.replace('/', '_').removesuffix('.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(tool, capsys, *args):
    """``tool.main(args)`` in-process; returns (exit code, stdout, stderr)."""
    try:
        code = tool.main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    """A user mistake: exit code 2, no traceback, a last line ``error: ...`` holding
    every needle."""
    assert code == 2, err
    assert 'Traceback' not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith('error: '), err
    for needle in needles:
        assert needle in last, last


def loader_options(root, loaders=('train', 'val', 'test')):
    """``--cfg-options`` that point the given data loaders at ``root`` and load in the
    main process (no workers to start: the toy sets are tiny)."""
    options = []
    for loader in loaders:
        options += [f'{loader}_dataloader.dataset.data_root={root}',
                    f'{loader}_dataloader.num_workers=0',
                    f'{loader}_dataloader.persistent_workers=False']
    return options
