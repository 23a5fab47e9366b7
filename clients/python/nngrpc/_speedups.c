/* nngrpc._speedups: the sync channel's first attempt in C (placeholder:
 * the real module replaces this file; see _channel.py). */
#define Py_LIMITED_API 0x030B0000
#include <Python.h>

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "nngrpc._speedups", NULL, 0, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&speedups_module); }
