# The C module's signature (_speedups.c); see call()'s docstring there.
from typing import Any, Optional, Tuple, Union

def call(
    fd: int,
    ipc: bool,
    rid: int,
    method: bytes,
    rid_entry: bytes,
    payload: Union[bytes, bytearray, memoryview],
    deadline: Optional[float],
    wait_until: Optional[float],
    buf: bytearray,
    max_recv: int,
    armed: float,
) -> Tuple[Any, ...]: ...  # ints, then the armed timeout (float)
