"""``tools/check_data.py CONFIG``: decodes every image and label map of the config's data
sets and lists the bad ones by kind, with a count; exit 1 when any is bad, 0 when none."""
import shutil

import pytest
from PIL import Image
from tool_utils import ROOT, load_tool, run_main

from mmfec.datasets import ensure_toy_ade20k, ensure_toy_coco

CONFIGS = ROOT / 'configs'


@pytest.fixture(scope='module')
def tool():
    return load_tool('check_data.py')


@pytest.fixture(scope='module')
def clean_coco(tmp_path_factory):
    return ensure_toy_coco(tmp_path_factory.mktemp('check_coco'), num_train=8, num_val=2,
                           image_size=64)


def _coco_options(root):
    options = ['--cfg-options']
    for loader in ('train', 'val', 'test'):
        options.append(f'{loader}_dataloader.dataset.data_root={root}/')
    return options


def _report_lines(out):
    return [line for line in out.strip().splitlines() if line]


def test_clean_data_passes(tool, clean_coco, capsys):
    code, out, _ = run_main(tool, capsys, CONFIGS / 'maskrcnn_fec_toy.py',
                            *_coco_options(clean_coco))
    assert code == 0, out
    assert _report_lines(out)[-1] == 'checked 10 files: all good'


def test_every_kind_of_bad_image_is_listed_and_counted(tool, clean_coco, tmp_path, capsys):
    root = tmp_path / 'toy_coco'
    shutil.copytree(clean_coco, root)
    images = sorted((root / 'train2017').glob('*.jpg'))
    images[0].unlink()                                              # missing
    images[1].write_bytes(b'')                                      # empty
    data = images[2].read_bytes()
    images[2].write_bytes(data[:len(data) // 2])                    # truncated
    images[3].write_bytes(b'\xff\xd8\xff\xe0 this is no jpeg')      # unreadable
    Image.new('CMYK', (64, 64)).save(images[4], 'JPEG')             # wrong mode
    code, out, _ = run_main(tool, capsys, CONFIGS / 'maskrcnn_fec_toy.py',
                            *_coco_options(root), '--workers', 2)
    assert code == 1, out
    lines = _report_lines(out)
    expected = [('missing', images[0]), ('empty', images[1]), ('truncated', images[2]),
                ('unreadable', images[3]), ('wrong mode', images[4])]
    for line, (kind, path) in zip(lines, expected):
        assert line.startswith(kind) and str(path) in line, lines
    assert lines[-1] == ('5 bad of 10 files checked: 1 missing, 1 empty, 1 truncated, '
                         '1 unreadable, 1 wrong mode')


def test_bad_label_maps_are_listed(tool, tmp_path, capsys):
    root = ensure_toy_ade20k(tmp_path, num_train=4, num_val=2)
    maps = sorted((root / 'annotations' / 'training').glob('*.png'))
    maps[0].write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)        # corrupt
    Image.open(maps[1]).convert('RGB').save(maps[1])                # RGB, not one channel
    options = ['--cfg-options'] + [f'{loader}_dataloader.dataset.data_root={root}'
                                   for loader in ('train', 'val', 'test')]
    code, out, _ = run_main(tool, capsys, CONFIGS / 'semfpn_fec_toy.py', *options)
    assert code == 1, out
    lines = _report_lines(out)
    assert lines[0].startswith('unreadable') and str(maps[0]) in lines[0], lines
    assert 'label map' in lines[0]
    assert lines[1].startswith('wrong mode') and str(maps[1]) in lines[1], lines
    assert 'mode RGB' in lines[1]
    assert lines[-1] == '2 bad of 12 files checked: 1 unreadable, 1 wrong mode'
