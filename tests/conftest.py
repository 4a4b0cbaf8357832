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


def pytest_unconfigure(config):
    """A process that hangs after the session (e.g. multiprocessing's exit handler joining a
    child that never stops) fails here with every thread's stack after two minutes, instead
    of running into CI's time limit with nothing to read."""
    import faulthandler
    faulthandler.dump_traceback_later(120, exit=True)
