"""FEC's linear-memory clustering equals the paper's dense formulation (outputs and grads)."""
import pytest
import torch

from mmfec.models.layers import assignment
from mmfec.testing import clustering_fec, dense_fec_forward


def _pair_of_models(**kwargs):
    # Make the clustering matter: large layer scales, non-trivial alpha/beta.
    return clustering_fec('small', seed=0, **kwargs)


def _outputs_and_grads(forward, model, img):
    model.zero_grad()
    outs = forward(model, img)
    sum((o * torch.linspace(-1, 1, o.numel()).reshape(o.shape)).sum() for o in outs).backward()
    return outs, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize('kwargs, size', [
    (dict(proposal_sizes=(4, 4, 2, 2)), (64, 64)),
    (dict(proposal_sizes=7, fold_sizes=(2, 2, 1, 1)), (128, 96)),
    (dict(proposal_sizes=((3, 5), 4, 2, (1, 2)), fold_sizes=(2, 1, 2, 1)), (64, 128)),
])
def test_outputs_and_gradients_equal_the_dense_oracle(kwargs, size):
    model = _pair_of_models(**kwargs).train()
    img = torch.randn(2, 3, *size)
    ours, our_grads = _outputs_and_grads(lambda m, x: m(x), model, img)
    dense, dense_grads = _outputs_and_grads(dense_fec_forward, model, img)
    for a, b in zip(ours, dense):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert our_grads.keys() == dense_grads.keys()
    for name in our_grads:
        torch.testing.assert_close(our_grads[name], dense_grads[name], rtol=1e-3, atol=1e-4,
                                   msg=name)


def test_negative_alpha_ranks_by_the_sigmoid_not_the_cosine():
    model = _pair_of_models(proposal_sizes=3).eval()
    for name, param in model.named_parameters():
        if name.endswith('sim_alpha'):
            param.data.fill_(-1.5)
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(img), dense_fec_forward(model, img)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_chunked_similarity_gives_the_same_assignment(monkeypatch):
    torch.manual_seed(1)
    points = torch.nn.functional.normalize(torch.randn(2, 8, 1000), dim=1)
    centers = torch.nn.functional.normalize(torch.randn(2, 8, 250), dim=1)
    full = assignment.nearest_centers(points, centers)
    chunked = assignment.nearest_centers(points, centers, chunk_elements=2 * 250 * 37)
    assert torch.equal(full, chunked)
    expected = (centers.transpose(1, 2) @ points).max(dim=1).indices
    assert torch.equal(full, expected)
