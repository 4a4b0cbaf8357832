"""Cluster maps: records agree with the forward pass, maps cover the image, colours are
followed, figures have a predictable size, and the training hook writes its PNGs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmfec.models import FEC, ClusterRecorder
from mmfec.visualization import (
    cluster_maps,
    clustering_layers,
    draw_cluster_maps,
    figure_shape,
    hierarchy_maps,
    panel_shape,
    pixel_points,
    record_clusters,
    render_figure,
    select_layers,
)

TINY = dict(layers=(1, 1, 1, 1), embed_dims=(8, 16, 24, 32), mlp_ratios=(2, 2, 2, 2),
            heads=(2, 2, 3, 3), head_dims=4)


def tiny_fec(**kwargs):
    torch.manual_seed(0)
    kwargs.setdefault('proposal_sizes', 2)
    model = FEC(TINY, **kwargs)
    model.init_weights()
    return model.eval()


def spans(length, folds):
    """The documented fold split: region i covers [i * L // f, (i + 1) * L // f)."""
    folds = max(1, min(folds, length))
    return [(i * length // folds, (i + 1) * length // folds) for i in range(folds)]


def capture(module):
    """Forward hook storing the module's input and output."""
    store = {}

    def hook(_, args, output):
        store['x'], store['out'] = args[0].detach(), output.detach()
    return store, module.register_forward_hook(hook)


# --------------------------------------------------------------- (1) records = forward
def rebuild_encoding(layer, x, record):
    """The layer's output from the recorded assignment and similarity alone."""
    batch, _, height, width = x.shape
    heads, dims = layer.heads, layer.head_dims
    feats = layer.f(x).reshape(batch * heads, dims, height, width)
    values = layer.v(x).reshape(batch * heads, dims, height, width)
    rows, cols = record['regions']
    ph, pw = layer.proposal_size
    grid_v = values.new_zeros(batch * heads, dims, rows * ph, cols * pw)
    grid_f = values.new_zeros(batch * heads, dims, rows * ph, cols * pw)
    for i, (r0, r1) in enumerate(spans(height, rows)):
        for j, (c0, c1) in enumerate(spans(width, cols)):
            block = (slice(None), slice(None), slice(i * ph, (i + 1) * ph),
                     slice(j * pw, (j + 1) * pw))
            grid_v[block] = F.adaptive_avg_pool2d(values[..., r0:r1, c0:c1], (ph, pw))
            grid_f[block] = F.adaptive_avg_pool2d(feats[..., r0:r1, c0:c1], (ph, pw))
    assign = record['assignment'].reshape(batch * heads, -1)
    sim = record['similarity'].reshape(batch * heads, -1)
    flat_v, centers_v = values.flatten(2), grid_v.flatten(2)
    index = assign.unsqueeze(1).expand(-1, dims, -1)
    sums = torch.zeros_like(centers_v).scatter_add(2, index, flat_v)
    counts = torch.zeros(batch * heads, centers_v.shape[2]).scatter_add(
        1, assign, torch.ones_like(sim))
    new_v = (centers_v + sums) / (counts.unsqueeze(1) + 1)
    out = new_v.gather(2, index) * sim.unsqueeze(1)
    # the similarity is sigmoid(beta + alpha * cos) to the recorded center
    cos = (F.normalize(feats.flatten(2), dim=1)
           * F.normalize(grid_f.flatten(2), dim=1).gather(2, index)).sum(1)
    torch.testing.assert_close(sim, layer.similarity(cos), atol=1e-5, rtol=1e-5)
    return layer.proj(out.reshape(batch, heads * dims, height, width))


def rebuild_pooling(layer, x, record):
    skip = layer.conv_skip(x)
    feats, values = layer.conv_f(x), layer.conv_v(x)
    batch, dims, height, width = values.shape
    out_h, out_w = skip.shape[-2:]
    assert tuple(record['center_grid']) == (out_h, out_w)
    rows, cols = record['regions']
    grid_v, grid_f = torch.zeros_like(skip), torch.zeros_like(skip)
    for o0, o1 in spans(out_h, rows):
        for p0, p1 in spans(out_w, cols):
            r, c = slice(2 * o0, min(2 * o1, height)), slice(2 * p0, min(2 * p1, width))
            grid_v[..., o0:o1, p0:p1] = F.adaptive_avg_pool2d(values[..., r, c], (o1 - o0, p1 - p0))
            grid_f[..., o0:o1, p0:p1] = F.adaptive_avg_pool2d(feats[..., r, c], (o1 - o0, p1 - p0))
    assign = record['assignment'].reshape(batch, -1)
    index = assign.unsqueeze(1).expand(-1, dims, -1)
    centers_v = grid_v.flatten(2)
    sums = torch.zeros_like(centers_v).scatter_add(2, index, values.flatten(2))
    counts = torch.zeros(batch, centers_v.shape[2]).scatter_add(
        1, assign, torch.ones(assign.shape))
    new_v = (centers_v + sums) / (counts.unsqueeze(1) + 1)
    cos = (F.normalize(feats.flatten(2), dim=1)
           * F.normalize(grid_f.flatten(2), dim=1).gather(2, index)).sum(1)
    torch.testing.assert_close(record['similarity'].reshape(batch, -1), cos,
                               atol=1e-5, rtol=1e-5)
    return skip + layer.norm2(new_v.reshape(batch, dims, out_h, out_w))


def test_recorded_assignments_rebuild_the_layer_outputs_with_folds():
    model = tiny_fec(fold_sizes=(2, 2, 1, 1))
    encoding, pooling = model.network[0][0].token_mixer, model.network[1]
    enc_io, h1 = capture(encoding)
    pool_io, h2 = capture(pooling)
    x = torch.randn(2, 3, 72, 100)  # stage 1 is 18x25: uneven fold regions, odd width
    with torch.no_grad(), ClusterRecorder(model) as records:
        model(x)
    h1.remove()
    h2.remove()
    by_name = {r['name']: r for r in records}
    enc_rec, pool_rec = by_name['network.0.0.token_mixer'], by_name['network.1']
    assert enc_rec['regions'] == (2, 2) and enc_rec['center_grid'] == (4, 4)
    assert pool_rec['regions'] == (2, 2) and tuple(pool_rec['center_grid']) == (9, 13)
    with torch.no_grad():
        torch.testing.assert_close(rebuild_encoding(encoding, enc_io['x'], enc_rec),
                                   enc_io['out'], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(rebuild_pooling(pooling, pool_io['x'], pool_rec),
                                   pool_io['out'], atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------- (2) maps cover the image
def test_pixels_beyond_the_floored_stem_join_the_last_point():
    points = pixel_points((70, 101), (70, 101), (17, 25))
    assert points.shape == (70, 101)
    assert points[0, 0] == 0 and points[69, 100] == 16 * 25 + 24
    assert points[67, 99] == 16 * 25 + 24 and points[63, 95] == 15 * 25 + 23
    scaled = pixel_points((140, 202), (70, 101), (17, 25))  # image shown at 2x
    assert scaled[2 * 63 + 1, 2 * 95] == 15 * 25 + 23


@pytest.mark.parametrize('image_size, input_size, tensor_size', [
    ((70, 101), (70, 101), (70, 101)),      # odd size, stem floors
    ((33, 190), (33, 190), (33, 190)),      # extreme aspect ratio
    ((140, 202), (70, 101), (70, 101)),     # maps drawn larger than the input
    ((70, 101), (70, 101), (96, 128)),      # padded batch input
])
def test_maps_have_image_size_and_at_most_the_layer_centers(image_size, input_size,
                                                            tensor_size):
    model = tiny_fec(fold_sizes=(2, 2, 1, 1))
    records = record_clusters(model, torch.randn(1, 3, *tensor_size))
    maps = cluster_maps(records, image_size, input_size, head=1)
    assert [m.name for m in maps] == [
        'stage1.block0', 'pool2', 'stage2.block0', 'pool3', 'stage3.block0', 'pool4',
        'stage4.block0']
    for cmap, record in zip(maps, records):
        assert cmap.ids.shape == image_size and cmap.ids.dtype == np.int64
        assert cmap.num_centers == np.prod(record['center_grid'])
        assert cmap.ids.min() >= 0 and cmap.ids.max() < cmap.num_centers  # one valid id each
        assert 1 <= cmap.num_clusters <= cmap.num_centers
    assert maps[0].num_centers == 2 * 2 * 4  # 2x2 centers in each of 2x2 fold regions
    # the hierarchy: every pool-k cluster lies inside one pool-(k+1) cluster
    hierarchy = hierarchy_maps(records, image_size, input_size)
    assert [m.name for m in hierarchy] == ['pool2', 'pool3', 'pool4']
    for fine, coarse in zip(hierarchy, hierarchy[1:]):
        for cluster in np.unique(fine.ids):
            assert np.unique(coarse.ids[fine.ids == cluster]).size == 1


def test_encoding_map_reads_the_chosen_head_through_the_pooling_chain():
    model = tiny_fec()
    records = record_clusters(model, torch.randn(1, 3, 64, 64))
    maps = {m.name: m for m in cluster_maps(records, (64, 64), head=1)}
    stage1 = records[0]['assignment'][0, 1].numpy()
    assert np.array_equal(maps['stage1.block0'].ids, np.kron(stage1, np.ones((4, 4), int)))
    pool2 = records[1]['assignment'][0].numpy().reshape(-1)
    stage2 = records[2]['assignment'][0, 1].numpy().reshape(-1)
    expected = stage2[pool2[pixel_points((64, 64), (64, 64), (16, 16))]]
    assert np.array_equal(maps['stage2.block0'].ids, expected)
    with pytest.raises(ValueError, match='head 2 is out of range for stage1.block0'):
        cluster_maps(records, (64, 64), head=2)
    only3 = cluster_maps(records, (64, 64), head=2, layers=['stage3.block0'])  # 3 heads there
    assert [m.name for m in only3] == ['stage3.block0']


def test_layer_names_paths_and_selection_errors():
    model = tiny_fec()
    layers = clustering_layers(model)
    assert [(i.name, i.path) for i in layers][:2] == [
        ('stage1.block0', 'network.0.0.token_mixer'), ('pool2', 'network.1')]
    assert [i.name for i in select_layers(layers, ['network.3', 'pool2'])] == ['pool3', 'pool2']
    assert len(select_layers(layers, 'all')) == 7
    with pytest.raises(ValueError, match='valid layers: stage1.block0, pool2'):
        select_layers(layers, ['stage9.block0'])


# --------------------------------------------------------------- (3) clusters follow colour
RED, GREEN, BLUE, YELLOW = (2., -1., -1.), (-1., 2., -1.), (-1., -1., 2.), (1., 1., -2.)


def colour_image():
    """64x96 flat regions (edges on the 8-px grid): red left half with a yellow square,
    green top right, blue bottom right. Returns (image [1, 3, H, W], region id [H, W])."""
    region = np.zeros((64, 96), np.int64)
    region[:32, 48:], region[32:, 48:], region[8:24, 8:24] = 1, 2, 3
    colours = torch.tensor([RED, GREEN, BLUE, YELLOW])
    image = colours[torch.from_numpy(region)].permute(2, 0, 1).unsqueeze(0)
    return image.contiguous(), region


def colour_seeing_fec():
    """Stage 1 (and the first pooling) cluster on the RGB colour: the stem averages each
    4x4 patch's colour into channels 0-2, ``f`` copies them, blocks change nothing."""
    model = tiny_fec()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]:
            norm.weight.fill_(1)
        stem = model.patch_embed.proj.weight
        for c in range(3):
            stem[c, c] = 1 / 16
        mixer = model.network[0][0].token_mixer
        mixer.sim_alpha.fill_(1)
        for h in range(mixer.heads):
            for c in range(3):
                mixer.f.weight[h * mixer.head_dims + c, c] = 1
        for c in range(3):
            model.network[1].conv_f.weight[c, c] = 1
    return model


def test_clusters_follow_flat_colour_regions():
    image, region = colour_image()
    records = record_clusters(colour_seeing_fec(), image)
    maps = {m.name: m for m in cluster_maps(records, (64, 96), layers=['stage1.block0',
                                                                        'pool2'])}
    for head in (0, 1):
        ids = cluster_maps(records, (64, 96), head=head, layers=['stage1.block0'])[0].ids
        # one cluster per colour region and one region per cluster: borders coincide
        pairs = {(int(r), int(c)) for r, c in zip(region.ravel(), ids.ravel())}
        assert len(pairs) == 4 == len({r for r, _ in pairs}) == len({c for _, c in pairs})
    pool2 = maps['pool2'].ids  # the hierarchy never joins two colours
    for cluster in np.unique(pool2):
        assert np.unique(region[pool2 == cluster]).size == 1
    assert np.unique(pool2).size >= 4


# --------------------------------------------------------------- rendering
@pytest.mark.parametrize('size', [(40, 300), (64, 64), (900, 380)])
def test_figure_size_is_predictable_and_keeps_the_aspect_ratio(size):
    model = tiny_fec()
    records = record_clusters(model, torch.randn(1, 3, 64, 64))
    maps = cluster_maps(records, size, (64, 64), layers=['stage1.block0', 'pool2'])
    image = np.full(size + (3,), 127, np.uint8)
    figure = render_figure(image, maps)
    assert figure.shape == figure_shape(size, 3) + (3,) and figure.dtype == np.uint8
    ph, pw = panel_shape(size)
    assert abs(ph / pw - size[0] / size[1]) < 0.05 and 256 <= max(ph, pw) <= 768


# --------------------------------------------------------------- the training hook
def test_cluster_map_hook_saves_pngs_per_validation(tmp_path):
    from mmengine.evaluator import BaseMetric
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from mmengine.structures import BaseDataElement

    from mmfec.engine import ClusterMapHook  # noqa: F401  (registers the hook)

    class TinyModel(BaseModel):
        def __init__(self):
            super().__init__(data_preprocessor=dict(
                type='ImgDataPreprocessor', mean=[127.5] * 3, std=[64.] * 3,
                bgr_to_rgb=True))
            self.backbone = tiny_fec()

        def forward(self, inputs, data_samples=None, mode='tensor'):
            feats = self.backbone(inputs)[-1].mean()
            if mode == 'loss':
                return dict(loss=feats * 0 + feats.pow(2))
            return [BaseDataElement() for _ in range(inputs.shape[0])]

    class NoMetric(BaseMetric):
        def process(self, data_batch, data_samples):
            self.results.append(0)

        def compute_metrics(self, results):
            return {}

    def sample(i):
        meta = dict(img_path=f'/data/img_{i}.jpg', img_shape=(48, 64))
        image = torch.randint(0, 255, (3, 48, 64), dtype=torch.uint8)
        return dict(inputs=image, data_samples=BaseDataElement(metainfo=meta))

    data = [sample(i) for i in range(3)]
    loader = dict(dataset=data, sampler=dict(type='DefaultSampler', shuffle=False),
                  batch_size=2, collate_fn=dict(type='pseudo_collate'))
    runner = Runner(
        model=TinyModel(), work_dir=str(tmp_path), train_dataloader=loader,
        val_dataloader=loader, val_evaluator=[NoMetric()], log_level='WARNING',
        test_dataloader=loader, test_evaluator=[NoMetric()], test_cfg=dict(),
        train_cfg=dict(by_epoch=True, max_epochs=1, val_interval=1), val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.0)),
        custom_hooks=[dict(type='ClusterMapHook', num_images=3, layers=['pool2'])],
        default_hooks=dict(checkpoint=None, logger=None),
        visualizer=dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')]),
        default_scope='mmengine')
    runner.train()
    folder = tmp_path / 'cluster_maps' / 'epoch_1'
    assert sorted(p.name for p in folder.iterdir()) == ['img_0.png', 'img_1.png', 'img_2.png']
    import cv2
    assert cv2.imread(str(folder / 'img_0.png')).shape[:2] == figure_shape((48, 64), 2)
    sent = list(tmp_path.glob('*/vis_data/vis_image/cluster_maps_img_0_1.png'))
    assert len(sent) == 1
    runner.test()  # a test run draws too, into cluster_maps/test
    assert len(list((tmp_path / 'cluster_maps' / 'test').iterdir())) == 3


def test_cluster_map_hook_rejects_unknown_layers_before_training():
    from mmfec.engine import ClusterMapHook

    class FakeRunner:
        model = tiny_fec()
    with pytest.raises(ValueError, match="ClusterMapHook: unknown layer 'pool9'"):
        ClusterMapHook(layers=['pool9']).before_run(FakeRunner())
    with pytest.raises(ValueError, match='num_images'):
        ClusterMapHook(num_images=0)


def test_draw_cluster_maps_returns_one_figure_per_image():
    model = tiny_fec()
    images = [np.zeros((64, 80, 3), np.uint8), np.zeros((50, 70, 3), np.uint8)]
    results = draw_cluster_maps(model, torch.randn(2, 3, 64, 80), images,
                                input_sizes=[(64, 80), (50, 70)], layers=['pool3'])
    assert [fig.shape[:2] for fig, _ in results] == [figure_shape((64, 80), 2),
                                                    figure_shape((50, 70), 2)]
