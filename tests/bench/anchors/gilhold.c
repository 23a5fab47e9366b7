/*
 * _gilhold: the original problem, as a bench anchor. An in-process C
 * extension that does its work WITHOUT releasing the GIL, as the engine
 * behind the team's first C extension did: while one thread is inside,
 * every other Python thread of the process waits.
 *
 *   echo(data: bytes) -> bytes   a copy of data
 *   work(ms: int) -> int         sleeps ms milliseconds holding the GIL
 *                                (nanosleep, no Py_BEGIN_ALLOW_THREADS);
 *                                returns the microseconds it slept
 *   spin(ms: int) -> int         the same, busy-waiting on the CPU
 *
 * 32 threads calling work(10) get about 100 calls/s in all, the same as
 * one thread: 1x, not 32x.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <time.h>

static long long
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long long) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

static PyObject *
gil_echo(PyObject *self, PyObject *arg)
{
	char      *data;
	Py_ssize_t len;

	(void) self;
	if (PyBytes_AsStringAndSize(arg, &data, &len) != 0) {
		return (NULL);
	}
	return (PyBytes_FromStringAndSize(data, len));
}

static PyObject *
gil_work(PyObject *self, PyObject *arg)
{
	long            ms = PyLong_AsLong(arg);
	long long       start;
	struct timespec ts;

	(void) self;
	if (ms < 0 || (ms == -1 && PyErr_Occurred())) {
		if (!PyErr_Occurred()) {
			PyErr_SetString(PyExc_ValueError, "ms must be >= 0");
		}
		return (NULL);
	}
	start = now_us();
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) != 0) { /* the GIL stays held */
	}
	return (PyLong_FromLongLong(now_us() - start));
}

static PyObject *
gil_spin(PyObject *self, PyObject *arg)
{
	long      ms = PyLong_AsLong(arg);
	long long start, until;

	(void) self;
	if (ms < 0 || (ms == -1 && PyErr_Occurred())) {
		if (!PyErr_Occurred()) {
			PyErr_SetString(PyExc_ValueError, "ms must be >= 0");
		}
		return (NULL);
	}
	start = now_us();
	until = start + (long long) ms * 1000;
	while (now_us() < until) { }
	return (PyLong_FromLongLong(now_us() - start));
}

static PyMethodDef methods[] = {
	{ "echo", gil_echo, METH_O, "Returns a copy of the bytes given." },
	{ "work", gil_work, METH_O,
	    "Sleeps ms milliseconds without releasing the GIL." },
	{ "spin", gil_spin, METH_O,
	    "Busy-waits ms milliseconds without releasing the GIL." },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT,
	"_gilhold",
	"Work that holds the GIL: the in-process anchor of make bench.",
	-1,
	methods,
	NULL,
	NULL,
	NULL,
	NULL,
};

PyMODINIT_FUNC
PyInit__gilhold(void)
{
	return (PyModule_Create(&module));
}
