"""model-index.yml and its metafiles: OpenMMLab's model zoo format, every config listed."""
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(f'configs/{p.name}' for p in (ROOT / 'configs').glob('*.py'))


def _models():
    index = yaml.safe_load((ROOT / 'model-index.yml').read_text())
    models, collections = [], []
    for metafile in index['Import']:
        assert (ROOT / metafile).is_file(), metafile
        meta = yaml.safe_load((ROOT / metafile).read_text())
        collections += [c['Name'] for c in meta['Collections']]
        models += meta['Models']
    return models, collections


def test_every_config_is_listed_once():
    models, _ = _models()
    listed = [m['Config'] for m in models]
    assert sorted(listed) == CONFIGS


def test_every_listed_file_exists():
    models, _ = _models()
    for model in models:
        assert (ROOT / model['Config']).is_file(), model['Name']
        assert (ROOT / model['README']).is_file(), model['Name']


def test_models_have_the_openmmlab_fields():
    models, collections = _models()
    assert len({m['Name'] for m in models}) == len(models)
    for model in models:
        assert {'Name', 'In Collection', 'Config', 'Metadata', 'Results'} <= set(model)
        assert model['In Collection'] in collections
        assert isinstance(model['Metadata'], dict) and isinstance(model['Results'], list)
        for result in model['Results']:
            assert {'Task', 'Dataset', 'Metrics'} <= set(result), model['Name']
            assert all(isinstance(v, (int, float)) for v in result['Metrics'].values())


def test_no_weights_url_is_claimed():
    """No checkpoint of these configs is published, so no entry may point at one."""
    models, _ = _models()
    assert [m['Name'] for m in models if 'Weights' in m] == []


@pytest.mark.parametrize('name, metric, value', [
    ('maskrcnn_fec', 'box AP', 35.6), ('maskrcnn_fec', 'mask AP', 33.6),
    ('maskrcnn_fec_large', 'box AP', 39.9), ('semfpn_fec_base', 'mIoU', 37.7),
    ('fec_small_in1k', 'Top 1 Accuracy', 72.7), ('fec_base_in1k', 'Top 1 Accuracy', 78.1),
    ('fec_large_in1k', 'Top 1 Accuracy', 81.2),
])
def test_paper_numbers_are_marked_as_reported(name, metric, value):
    model = {m['Name']: m for m in _models()[0]}[name]
    result, = [r for r in model['Results'] if metric in r['Metrics']]
    assert result['Metrics'][metric] == value
    assert result['Source'].startswith('as reported')


def test_the_package_ships_the_same_index():
    assert (ROOT / 'mmfec' / '.mim' / 'model-index.yml').read_bytes() == \
        (ROOT / 'model-index.yml').read_bytes()
