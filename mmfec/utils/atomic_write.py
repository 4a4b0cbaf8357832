"""Write a file so that a failure leaves nothing half-written.

Why: every tool that writes a result (an ONNX graph, an explorer page, a purity table, a
GPU report) must leave either the whole new file or nothing at its path. The content
goes to a temporary file in the same folder, which replaces the target only once
complete (``os.replace`` is atomic within a file system).
"""
import contextlib
import os
import os.path as osp
import tempfile
from typing import Iterator, Union


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path`` (its folders made as needed) to write to;
    when the block succeeds it becomes ``path``, with the permissions a new file gets
    (mkstemp's are private), and when it fails it is removed."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
    os.close(handle)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.unlink(tmp)


def write_atomic(path: str, content: Union[str, bytes]) -> int:
    """Write ``content`` (text as UTF-8) to ``path`` through :func:`atomic_path`; returns
    the number of bytes written."""
    data = content.encode('utf-8') if isinstance(content, str) else content
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as stream:
            stream.write(data)
    return len(data)
