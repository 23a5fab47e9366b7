/*
 * _cgmark: callgrind's client requests for Python, so that make bench can
 * count the instructions of a block of calls and nothing else (not the
 * interpreter's start, not the imports, not the warm-up). Outside
 * valgrind every function does nothing (the requests are a few no-op
 * instructions).
 *
 *   on_valgrind() -> int   the number of valgrind layers we run under
 *                          (0: not under valgrind)
 *   start()                CALLGRIND_START_INSTRUMENTATION (for a run
 *                          with --instr-atstart=no)
 *   zero()                 CALLGRIND_ZERO_STATS: the counts start again
 *   dump(label: str)       CALLGRIND_DUMP_STATS_AT(label): writes the
 *                          counts since the last zero() or dump() to a
 *                          new callgrind.out file, headed "desc: Trigger:
 *                          Client Request: <label>"
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <valgrind/callgrind.h>

static PyObject *
cg_on_valgrind(PyObject *self, PyObject *unused)
{
	(void) self;
	(void) unused;
	return (PyLong_FromLong((long) RUNNING_ON_VALGRIND));
}

static PyObject *
cg_start(PyObject *self, PyObject *unused)
{
	(void) self;
	(void) unused;
	CALLGRIND_START_INSTRUMENTATION;
	Py_RETURN_NONE;
}

static PyObject *
cg_zero(PyObject *self, PyObject *unused)
{
	(void) self;
	(void) unused;
	CALLGRIND_ZERO_STATS;
	Py_RETURN_NONE;
}

static PyObject *
cg_dump(PyObject *self, PyObject *arg)
{
	const char *label = PyUnicode_AsUTF8(arg);

	(void) self;
	if (label == NULL) {
		return (NULL);
	}
	CALLGRIND_DUMP_STATS_AT(label);
	Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
	{ "on_valgrind", cg_on_valgrind, METH_NOARGS,
	    "Returns how many valgrind layers run this process (0: none)." },
	{ "start", cg_start, METH_NOARGS,
	    "Starts callgrind's instrumentation (--instr-atstart=no)." },
	{ "zero", cg_zero, METH_NOARGS, "Zeroes callgrind's counts." },
	{ "dump", cg_dump, METH_O,
	    "Dumps callgrind's counts since the last zero or dump, "
	    "labelled." },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT,
	"_cgmark",
	"callgrind client requests: count the instructions of a block.",
	-1,
	methods,
	NULL,
	NULL,
	NULL,
	NULL,
};

PyMODINIT_FUNC
PyInit__cgmark(void)
{
	return (PyModule_Create(&module));
}
