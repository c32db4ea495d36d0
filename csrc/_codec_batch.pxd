# aeronpy._codec_batch: Python-facing batch and one-call helpers over the inline C entry points of
# _codec.pxd. It has no cdef API of its own: Cython modules cimport _codec (inline) directly.
