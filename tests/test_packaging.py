"""mmfec in a user's own OpenMMLab environment: requirement ranges, configs shipped in the
package, and ``_base_ = 'mmfec::fec/...'`` from any directory (editable install and wheel)."""
import os
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (ROOT / 'configs').glob('*.py'))
SHIPPED_TOOLS = ('train.py', 'test.py', 'visualize_clusters.py', 'dist_train.sh',
                 'dist_test.sh', 'torchrun.sh')
TIMEOUT = 600


def _requirements():
    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    reqs = [Requirement(r) for r in project['dependencies']]
    for extra in ('det', 'seg'):
        reqs += [Requirement(r) for r in project['optional-dependencies'][extra]]
    return {r.name: r.specifier for r in reqs}


@pytest.mark.parametrize('name, versions', [
    ('torch', ['2.1.0', '2.4.1', '2.13.0']),
    ('mmengine', ['0.10.4', '0.10.5', '0.10.6', '0.10.7']),
    ('mmcv', ['2.0.1', '2.1.0']),
    ('mmdet', ['3.1.0', '3.2.0', '3.3.0']),
    ('mmsegmentation', ['1.1.0', '1.1.2', '1.2.1', '1.2.2']),
])
def test_requirement_ranges_admit_the_supported_versions(name, versions):
    specifier = _requirements()[name]
    assert [v for v in versions if v not in specifier] == []


@pytest.mark.parametrize('name, version', [
    ('mmengine', '0.10.3'), ('mmengine', '0.11.0'), ('mmcv', '2.2.0'), ('mmdet', '3.0.0'),
    ('mmsegmentation', '1.0.0'),
    ('mmsegmentation', '1.2.0'),  # its wheel lacks a data file: `import mmseg.utils` fails
])
def test_requirement_ranges_exclude_versions_that_do_not_work(name, version):
    assert version not in _requirements()[name]


def test_mmcv_range_is_what_mmdet_and_mmseg_accept():
    """mmdet and mmseg assert their own mmcv window at import; ours ends where the newest
    ones' ends (2.2.0: mmdet 3.2/3.3, mmseg 1.2) and never goes past the installed ones'
    (mmdet 3.1 and mmseg 1.1 end earlier, at 2.1.0)."""
    import mmcv
    import mmdet
    import mmseg
    from packaging.version import Version
    specifier = _requirements()['mmcv']
    assert mmcv.__version__ in specifier
    assert '2.1.2' in specifier and '2.2.0' not in specifier
    assert Version(mmdet.mmcv_maximum_version) <= Version('2.2.0')
    assert Version(mmseg.MMCV_MAX) <= Version('2.2.0')
    assert '2.0.0' not in specifier  # older than the oldest, untested


def test_installed_stack_satisfies_the_ranges():
    import mmcv
    import mmdet
    import mmengine
    import mmseg
    import torch
    installed = {'torch': torch.__version__.split('+')[0], 'mmengine': mmengine.__version__,
                 'mmcv': mmcv.__version__, 'mmdet': mmdet.__version__,
                 'mmsegmentation': mmseg.__version__}
    specs = _requirements()
    assert {n: v for n, v in installed.items() if v not in specs[n]} == {}


def test_package_configs_are_the_repository_configs():
    """One source of truth: mmfec/.mim links to configs/, model-index.yml and tools/."""
    mim = ROOT / 'mmfec' / '.mim'
    assert (mim / 'configs').resolve() == (ROOT / 'configs').resolve()
    assert (mim / 'model-index.yml').resolve() == (ROOT / 'model-index.yml').resolve()
    assert (mim / 'tools').resolve() == (ROOT / 'tools').resolve()


def test_mmfec_base_resolves_to_the_shipped_file():
    import mmfec  # noqa: F401
    from mmfec.utils.package_configs import resolve_mmfec_config
    path = Path(resolve_mmfec_config('mmfec::fec/maskrcnn_fec.py'))
    assert path.read_bytes() == (ROOT / 'configs' / 'maskrcnn_fec.py').read_bytes()


@pytest.mark.parametrize('name, error, message', [
    ('mmfec::maskrcnn_fec.py', ValueError, "'mmfec::fec/<config>.py'"),
    ('mmfec::det/maskrcnn_fec.py', ValueError, "'mmfec::fec/<config>.py'"),
    ('mmfec::fec/maskrcnn.py', FileNotFoundError, 'maskrcnn_fec.py, maskrcnn_fec_base.py'),
])
def test_bad_mmfec_base_names_say_what_exists(name, error, message):
    import mmfec  # noqa: F401
    from mmfec.utils.package_configs import resolve_mmfec_config
    with pytest.raises(error, match=message.replace('(', r'\(').replace(')', r'\)')):
        resolve_mmfec_config(name)


def _scopes(value):
    """Every ``_scope_`` in a config dict, nested ones included."""
    if isinstance(value, dict):
        found = {value['_scope_']} if '_scope_' in value else set()
        return found.union(*(_scopes(v) for v in value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*(_scopes(v) for v in value))
    return set()


def test_mmfec_base_gets_no_scope_of_its_own(tmp_path):
    """A base read through mmfec:: behaves like the file itself: a user's
    ``pipeline={{_base_.train_pipeline}}`` builds mmdet's transforms, not mmcv's."""
    from mmcv.transforms import Compose
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import mmfec  # noqa: F401
    user = tmp_path / 'my_toy_detector.py'
    user.write_text(textwrap.dedent('''\
        _base_ = 'mmfec::fec/maskrcnn_fec_toy.py'
        my_pipeline = {{_base_.train_pipeline}}
        model = dict(backbone=dict(drop_path_rate=0.1))
        '''))
    cfg = Config.fromfile(str(user))
    assert cfg.model.backbone.type == 'FEC' and cfg.model.backbone.drop_path_rate == 0.1
    assert 'mmfec' not in _scopes(cfg.to_dict())
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        transforms = Compose(cfg.my_pipeline).transforms
    assert type(transforms[1]).__module__.startswith('mmdet.')  # mmdet's LoadAnnotations


# ------------------------------------------------------------------ installs, end to end
USER_CHECK = textwrap.dedent('''\
    """Run from a temporary directory: inherit mmfec's configs, build both models."""
    import os, sys
    import mmfec
    from mmengine.config import Config
    print('mmfec from', os.path.dirname(mmfec.__file__))
    for name, scope in (('my_detector.py', 'mmdet'), ('my_segmentor.py', 'mmseg')):
        cfg = Config.fromfile(name)
        if scope == 'mmdet':
            from mmdet.registry import MODELS
            from mmdet.utils import register_all_modules
        else:
            from mmseg.registry import MODELS
            from mmseg.utils import register_all_modules
        register_all_modules(init_default_scope=True)
        model = MODELS.build(cfg.model)
        print(name, type(model).__name__, type(model.backbone).__name__,
              model.backbone.arch['embed_dims'])
    ''')
USER_DETECTOR = textwrap.dedent('''\
    _base_ = 'mmfec::fec/maskrcnn_fec_base.py'
    model = dict(backbone=dict(init_cfg=None), roi_head=dict(
        bbox_head=dict(num_classes=5), mask_head=dict(num_classes=5)))
    ''')
USER_SEGMENTOR = textwrap.dedent('''\
    _base_ = 'mmfec::fec/semfpn_fec.py'
    model = dict(backbone=dict(init_cfg=None), decode_head=dict(num_classes=19))
    ''')


def _user_project(tmp_path):
    project = tmp_path / 'my_project'
    project.mkdir()
    (project / 'check.py').write_text(USER_CHECK)
    (project / 'my_detector.py').write_text(USER_DETECTOR)
    (project / 'my_segmentor.py').write_text(USER_SEGMENTOR)
    return project


def _run(args, cwd, timeout=TIMEOUT):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    env.pop('PYTHONPATH', None)
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, (f'{args}: exit {result.returncode}\n{result.stdout[-3000:]}'
                                    f'\n{result.stderr[-5000:]}')
    return result.stdout


def _assert_built(stdout):
    assert 'my_detector.py MaskRCNN FEC (64, 128, 320, 512)' in stdout
    assert 'my_segmentor.py EncoderDecoder FEC (32, 64, 196, 320)' in stdout


@pytest.mark.slow
def test_mmfec_bases_from_another_directory_with_the_editable_install(tmp_path):
    """The install `make setup` makes (pip install -e .): mmengine's own lookup would go to
    site-packages/mmfec, which does not exist for it."""
    stdout = _run([sys.executable, 'check.py'], cwd=_user_project(tmp_path))
    assert f'mmfec from {ROOT / "mmfec"}' in stdout
    _assert_built(stdout)


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """``pip wheel --no-deps`` of a copy of the checkout (the build writes build/ and
    *.egg-info into its source tree, which must not be the shared checkout)."""
    base = tmp_path_factory.mktemp('wheel')
    source = base / 'src'
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        '.git', '.venv', 'data', 'work_dirs', 'build', '*.egg-info', '__pycache__',
        '.pytest_cache', 'checkpoints'))
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
          '--disable-pip-version-check', '-w', base / 'dist', source], cwd=base)
    wheels = list((base / 'dist').glob('mmfec-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.slow
def test_wheel_contains_the_configs_the_model_index_and_the_tools(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = {name: archive.read(name) for name in names
                   if name.startswith('mmfec/.mim/')}
    expected = ({f'mmfec/.mim/configs/{c}' for c in CONFIGS} |
                {'mmfec/.mim/configs/metafile.yml', 'mmfec/.mim/model-index.yml'} |
                {f'mmfec/.mim/tools/{t}' for t in SHIPPED_TOOLS})
    assert expected - names == set()
    for name, data in shipped.items():  # copies of the repository's files, not others
        assert data == (ROOT / name[len('mmfec/.mim/'):]).read_bytes(), name


@pytest.mark.slow
def test_mmfec_bases_from_another_directory_with_the_wheel(wheel, tmp_path):
    """The wheel installed into a fresh venv that reuses this environment's torch, mmcv,
    mmdet and mmseg (appended to sys.path by a .pth), not the checkout's mmfec."""
    env_dir = tmp_path / 'venv'
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / 'bin' / 'python'
    site = Path(subprocess.check_output(
        [str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        text=True).strip())
    reused = [p for p in sys.path if p.endswith('site-packages')]
    (site / 'zz_reuse_stack.pth').write_text('\n'.join(reused) + '\n')
    _run([sys.executable, '-m', 'pip', '--python', python, 'install', '--no-deps',
          '--disable-pip-version-check', wheel], cwd=tmp_path)
    stdout = _run([python, 'check.py'], cwd=_user_project(tmp_path))
    assert f'mmfec from {site / "mmfec"}' in stdout
    _assert_built(stdout)
