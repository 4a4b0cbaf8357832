"""Fixtures shared by the test modules."""
import pytest
import torch


@pytest.fixture(scope='module')
def one_thread():
    """Small forward passes: on a busy 2-core machine, two OpenMP threads wait for each
    other far longer than one thread computes. Use with
    ``pytestmark = pytest.mark.usefixtures('one_thread')``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
