"""The cluster explorer page: self-contained, and in a real (headless Chromium) browser
the lineage it computes for a probed pixel is the one Python computes from the same
records, and its screenshot shows the image. Also ``visualize_clusters.py --html``."""
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tool_utils import load_tool

from mmfec.utils.images import resize_image
from mmfec.visualization import explorer_data, pixel_lineage, record_clusters, save_explorer

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'visualize_clusters.py'
BACKBONE_CFG = ROOT / 'configs' / 'fec_small_backbone.py'
BROWSERS = ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable')
BROWSER_TIMEOUT = 90
HEIGHT, WIDTH = 54, 70  # sides that are not multiples of 4; the input is resized
INPUT_SIZE = (64, 80)
MAGENTA = (255, 0, 255)
HEAD = 1
SIMILARITY_STEP = 2.0 / 255  # the page keeps similarities to one byte over [-1, 1]


def find_browser():
    for name in (os.environ.get('MMFEC_CHROMIUM'),) + BROWSERS:
        path = name and shutil.which(name)
        if path:
            return path
    return None


def browser_or_skip():
    path = find_browser()
    if path is None:
        pytest.skip('no headless Chromium found (looked for ' + ', '.join(BROWSERS) +
                    ' and $MMFEC_CHROMIUM); install Debian\'s chromium package, e.g. '
                    '`apt-get install -y chromium`')
    return path


def run_browser(page, *flags, query=''):
    """Headless Chromium on ``file://page?query``, offline, fresh profile; returns stdout."""
    with tempfile.TemporaryDirectory(prefix='mmfec-chromium-') as profile:
        args = [browser_or_skip(), '--headless', '--no-sandbox', '--disable-gpu',
                '--disable-quic', '--no-first-run', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', f'--user-data-dir={profile}',
                *flags, Path(page).resolve().as_uri() + query]
        result = subprocess.run(args, capture_output=True, text=True, timeout=BROWSER_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def make_image():
    rng = np.random.default_rng(0)
    image = rng.integers(70, 130, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[10:34, 12:52] = MAGENTA
    return image


@pytest.fixture(scope='module')
def page(tmp_path_factory):
    from mmfec.models import FEC
    torch.manual_seed(0)
    backbone = FEC('small', proposal_sizes=3, fold_sizes=(2, 2, 1, 1)).eval()
    image = make_image()
    # resized to the input size, then ImageNet statistics (RGB), as FEC's preprocessors do
    mean, std = torch.tensor([123.675, 116.28, 103.53]), torch.tensor([58.395, 57.12, 57.375])
    resized = torch.from_numpy(resize_image(image, INPUT_SIZE)).float()
    inputs = ((resized - mean) / std).permute(2, 0, 1)[None]
    records = record_clusters(backbone, inputs)
    path = tmp_path_factory.mktemp('explorer') / 'page.html'
    save_explorer(str(path), records, image, head=HEAD, title='probe </script><b>.png')
    return path, records


# ------------------------------------------------------------------ no browser needed
def test_page_is_one_self_contained_file(page):
    path, records = page
    text = path.read_text()
    assert '://' not in text  # no network address at all: images and data are inline
    assert '<link' not in text and 'src=' not in text.replace('img.src = D.image.src', '')
    # the title is escaped in the text and cannot end the data's <script> early
    assert '<h1>FEC cluster explorer: probe &lt;/script&gt;&lt;b&gt;.png</h1>' in text
    assert text.count('</script>') == 2 and '<b>' not in text.replace('<\\/script><b>', '')
    data = json.loads(re.search(r'<script type="application/json" id="mmfec-data">(.*?)'
                                r'</script>', text, re.S).group(1))
    assert data['image']['src'].startswith('data:image/jpeg;base64,')
    assert [layer['name'] for layer in data['layers'] if layer['shown']][:4] == [
        'stage1.block0', 'stage1.block1', 'stage1.block2', 'pool2']
    assert len(data['layers']) == len(records) == 17 and data['head'] == HEAD


def test_unselected_layers_stay_out_but_the_pooling_chain_stays_in(page):
    _, records = page
    data = explorer_data(records, make_image(), layers=['stage4.block1'])
    kinds = [(layer['name'], layer['shown']) for layer in data['layers']]
    assert kinds == [('pool2', False), ('pool3', False), ('pool4', False),
                     ('stage4.block1', True)]
    with pytest.raises(ValueError, match='head 9 is out of range'):
        explorer_data(records, make_image(), head=9)


# ------------------------------------------------------------------ in the browser
@pytest.mark.slow
@pytest.mark.parametrize('x, y', [(0, 0), (WIDTH - 1, HEIGHT - 1), (31, 22)])
def test_probed_lineage_equals_pythons(page, x, y):
    path, records = page
    dom = run_browser(path, '--dump-dom', query=f'?probe={x},{y}')
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found and found.group(1), dom[-2000:]
    probe = json.loads(html.unescape(found.group(1)))
    assert (probe['x'], probe['y'], probe['head']) == (x, y, HEAD)
    expected = pixel_lineage(records, (HEIGHT, WIDTH), x, y, head=HEAD)
    assert [(e['layer'], e['cluster'], e['size']) for e in probe['lineage']] == \
        [(e['layer'], e['cluster'], e['size']) for e in expected]
    for got, want in zip(probe['lineage'], expected):
        assert abs(got['similarity'] - want['similarity']) <= SIMILARITY_STEP / 2 + 1e-4, \
            (got, want)


@pytest.mark.slow
def test_screenshot_shows_the_image(page, tmp_path):
    path, _ = page
    shot = tmp_path / 'shot.png'
    run_browser(path, f'--screenshot={shot}', '--window-size=1400,1000',
                '--virtual-time-budget=5000', query='?probe=20,20')
    picture = cv2.imread(str(shot))[..., ::-1].astype(np.int64)
    assert picture.shape[:2] == (1000, 1400)
    assert picture.std() > 10  # not one blank colour
    magenta = (np.abs(picture - np.array(MAGENTA)).max(-1) <= 40).sum()
    # the image panel is 256 px wide for a 70-px image: its magenta block (40x24 px)
    # covers about 146x88 screen pixels
    assert magenta > 0.5 * (40 * 24) * (256 / WIDTH) ** 2, magenta


# ------------------------------------------------------------------ the tool
def _tool():
    return load_tool('visualize_clusters.py')


def _run_tool(capsys, *args):
    try:
        code = _tool().main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_tool_writes_the_page_with_every_layer(tmp_path, capsys):
    image = tmp_path / 'shapes.png'
    cv2.imwrite(str(image), make_image()[..., ::-1])
    code, out, err = _run_tool(capsys, BACKBONE_CFG, image, '--html', tmp_path / 'x' / 'e.html',
                               '--out', tmp_path / 'e.png', '--native-size')
    assert code == 0, err
    text = (tmp_path / 'x' / 'e.html').read_text()
    names = re.findall(r'"name":"([a-z0-9.]+)"', text)
    assert len(names) == 17 and names[-1] == 'stage4.block1'  # every layer by default
    assert 'cluster explorer, 17 layers' in out and (tmp_path / 'e.png').is_file()
    assert not [p for p in (tmp_path / 'x').iterdir() if p.name != 'e.html']  # no temp left


def test_tool_html_needs_one_image_and_an_html_name(tmp_path, capsys):
    image = tmp_path / 'a.png'
    cv2.imwrite(str(image), make_image())
    code, _, err = _run_tool(capsys, BACKBONE_CFG, image, image, '--html', tmp_path / 'e.html')
    assert code == 2 and err.strip().splitlines()[-1].startswith(
        'error: --html FILE.html takes exactly one IMAGE'), err
    code, _, err = _run_tool(capsys, BACKBONE_CFG, image, '--html', tmp_path / 'e.txt')
    assert code == 2 and 'must end with .html' in err, err
    assert not list(tmp_path.glob('e.*'))
