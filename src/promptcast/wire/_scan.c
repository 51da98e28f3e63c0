/* The byte scans of the relay's full-speed path, in C.
 *
 * At full speed one upstream read holds hundreds of events. Checked and
 * re-framed with bytes builtins (split, min/max, a %-format, `in`), each
 * event costs about 0.25 us: a search for a needle of six bytes or more over
 * a long buffer is CPython's scalar two-way loop, and a split or a format
 * makes an object or two per event. Here each is one pass of memchr/memmem
 * and memcpy. `promptcast.scan` holds the same functions in Python, the
 * reference these must match (tests/test_scan.py holds them to it), used
 * where this module was not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define DATA "data: "
#define DATA_LEN 6
/* The shortest event: `data: ` and its two line ends. */
#define MIN_EVENT (DATA_LEN + 2)

/* The events of `s` if it is whole `data: X\n\n` events, X free of CR and LF;
 * -1 otherwise. */
static Py_ssize_t
count_events(const char *s, Py_ssize_t n)
{
    const char *p = s, *end = s + n;
    Py_ssize_t count = 0;
    if (n == 0 || memchr(s, '\r', (size_t)n) != NULL) {
        return -1;
    }
    while (p < end) {
        const char *nl;
        if (end - p < MIN_EVENT || memcmp(p, DATA, DATA_LEN) != 0) {
            return -1;
        }
        nl = memchr(p + DATA_LEN, '\n', (size_t)(end - p - DATA_LEN));
        /* A line end, then a blank line: never past the end. */
        if (nl == NULL || nl + 1 >= end || nl[1] != '\n') {
            return -1;
        }
        count++;
        p = nl + 2;
    }
    return count;
}

PyDoc_STRVAR(data_lines_doc,
"data_lines(raw, /)\n--\n\n"
"The `data: ...` lines of `raw` if it is whole one-line `data:` events\n"
"(LF-framed, no CR); else None.");

static PyObject *
data_lines(PyObject *module, PyObject *raw)
{
    const char *s, *p;
    Py_ssize_t n, count, i;
    PyObject *lines;
    if (!PyBytes_CheckExact(raw)) {
        PyErr_Format(PyExc_TypeError, "raw must be bytes, not %.100s", Py_TYPE(raw)->tp_name);
        return NULL;
    }
    s = PyBytes_AS_STRING(raw);
    n = PyBytes_GET_SIZE(raw);
    count = count_events(s, n);
    if (count < 0) {
        Py_RETURN_NONE;
    }
    lines = PyList_New(count);
    if (lines == NULL) {
        return NULL;
    }
    p = s;
    for (i = 0; i < count; i++) {
        /* count_events found exactly these line ends. */
        const char *nl = memchr(p + DATA_LEN, '\n', (size_t)(s + n - p - DATA_LEN));
        PyObject *line = PyBytes_FromStringAndSize(p, nl - p);
        if (line == NULL) {
            Py_DECREF(lines);
            return NULL;
        }
        PyList_SET_ITEM(lines, i, line);
        p = nl + 2;
    }
    return lines;
}

/* Decimal digits of v >= 0, written backwards from `end`; returns the start. */
static char *
write_decimal(char *end, unsigned long long v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return end;
}

static Py_ssize_t
decimal_len(unsigned long long v)
{
    Py_ssize_t len = 1;
    while (v >= 10) {
        v /= 10;
        len++;
    }
    return len;
}

PyDoc_STRVAR(frame_doc,
"frame(prefix, first, lines, /)\n--\n\n"
"Each line framed as `<prefix><n>\\n<line>\\n\\n`, n counting from `first`, all in\n"
"one bytes.");

static PyObject *
frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *prefix, *lines, *out;
    long long first;
    Py_ssize_t count, plen, total, i;
    char *w, digits[24];
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "frame() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    prefix = args[0];
    lines = args[2];
    if (!PyBytes_CheckExact(prefix)) {
        PyErr_SetString(PyExc_TypeError, "prefix must be bytes");
        return NULL;
    }
    if (!PyList_CheckExact(lines)) {
        PyErr_SetString(PyExc_TypeError, "lines must be a list of bytes");
        return NULL;
    }
    first = PyLong_AsLongLong(args[1]);
    if (first == -1 && PyErr_Occurred()) {
        return NULL;
    }
    count = PyList_GET_SIZE(lines);
    if (first < 0) {
        PyErr_SetString(PyExc_ValueError, "first must be a non-negative sequence number");
        return NULL;
    }
    /* The last number, first + count - 1, must fit as `first` does. */
    if (count > 1 && first > LLONG_MAX - (count - 1)) {
        PyErr_SetString(PyExc_OverflowError, "the last sequence number is too large");
        return NULL;
    }
    plen = PyBytes_GET_SIZE(prefix);
    total = 0;
    for (i = 0; i < count; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        Py_ssize_t size;
        if (!PyBytes_CheckExact(line)) {
            PyErr_SetString(PyExc_TypeError, "lines must be a list of bytes");
            return NULL;
        }
        size = plen + decimal_len((unsigned long long)first + (unsigned long long)i) + 1
               + PyBytes_GET_SIZE(line) + 2;
        if (total > PY_SSIZE_T_MAX - size) {
            return PyErr_NoMemory();
        }
        total += size;
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) {
        return NULL;
    }
    w = PyBytes_AS_STRING(out);
    for (i = 0; i < count; i++) {
        /* Only C calls since the sizes were summed: the list and its items are as they were. */
        PyObject *line = PyList_GET_ITEM(lines, i);
        Py_ssize_t size = PyBytes_GET_SIZE(line);
        char *start = write_decimal(digits + sizeof digits,
                                    (unsigned long long)first + (unsigned long long)i);
        Py_ssize_t dlen = digits + sizeof digits - start;
        memcpy(w, PyBytes_AS_STRING(prefix), (size_t)plen);
        w += plen;
        memcpy(w, start, (size_t)dlen);
        w += dlen;
        *w++ = '\n';
        memcpy(w, PyBytes_AS_STRING(line), (size_t)size);
        w += size;
        *w++ = '\n';
        *w++ = '\n';
    }
    return out;
}

static int
haystack_needle(PyObject *const *args, Py_ssize_t nargs, const char *name,
                const char **h, Py_ssize_t *hlen, const char **nd, Py_ssize_t *nlen)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (%zd given)", name, nargs);
        return -1;
    }
    if (!PyBytes_CheckExact(args[0]) || !PyBytes_CheckExact(args[1])) {
        PyErr_Format(PyExc_TypeError, "%s() takes two bytes", name);
        return -1;
    }
    *h = PyBytes_AS_STRING(args[0]);
    *hlen = PyBytes_GET_SIZE(args[0]);
    *nd = PyBytes_AS_STRING(args[1]);
    *nlen = PyBytes_GET_SIZE(args[1]);
    if (*nlen == 0) {
        PyErr_Format(PyExc_ValueError, "%s(): empty needle", name);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(count_doc,
"count(haystack, needle, /)\n--\n\n"
"`haystack.count(needle)` (non-overlapping) by memmem; the needle must not be empty.");

static PyObject *
count(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const char *h, *nd, *p, *end;
    Py_ssize_t hlen, nlen, found = 0;
    if (haystack_needle(args, nargs, "count", &h, &hlen, &nd, &nlen) < 0) {
        return NULL;
    }
    p = h;
    end = h + hlen;
    while (end - p >= nlen) {
        const char *at = memmem(p, (size_t)(end - p), nd, (size_t)nlen);
        if (at == NULL) {
            break;
        }
        found++;
        p = at + nlen;
    }
    return PyLong_FromSsize_t(found);
}

PyDoc_STRVAR(contains_doc,
"contains(haystack, needle, /)\n--\n\n"
"`needle in haystack` by memmem; the needle must not be empty.");

static PyObject *
contains(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const char *h, *nd;
    Py_ssize_t hlen, nlen;
    if (haystack_needle(args, nargs, "contains", &h, &hlen, &nd, &nlen) < 0) {
        return NULL;
    }
    return PyBool_FromLong(hlen >= nlen && memmem(h, (size_t)hlen, nd, (size_t)nlen) != NULL);
}

PyDoc_STRVAR(find_line_doc,
"find_line(lines, line, /)\n--\n\n"
"The index of the first item of `lines` (a list of bytes) equal to `line`, or -1.");

static PyObject *
find_line(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *lines, *item;
    const char *want;
    Py_ssize_t len, i;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "find_line() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    lines = args[0];
    if (!PyList_CheckExact(lines) || !PyBytes_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "find_line() takes a list of bytes and a bytes");
        return NULL;
    }
    want = PyBytes_AS_STRING(args[1]);
    len = PyBytes_GET_SIZE(args[1]);
    /* No Python code runs in this loop: the list cannot change under it. A
     * length test and a memcmp, where list.index makes a rich comparison
     * (three calls) of every line. */
    for (i = 0; i < PyList_GET_SIZE(lines); i++) {
        item = PyList_GET_ITEM(lines, i);
        if (!PyBytes_CheckExact(item)) {
            PyErr_SetString(PyExc_TypeError, "find_line() takes a list of bytes and a bytes");
            return NULL;
        }
        if (PyBytes_GET_SIZE(item) == len && memcmp(PyBytes_AS_STRING(item), want, (size_t)len) == 0) {
            return PyLong_FromSsize_t(i);
        }
    }
    return PyLong_FromLong(-1);
}

static PyMethodDef methods[] = {
    {"data_lines", (PyCFunction)data_lines, METH_O, data_lines_doc},
    {"frame", (PyCFunction)(void (*)(void))frame, METH_FASTCALL, frame_doc},
    {"count", (PyCFunction)(void (*)(void))count, METH_FASTCALL, count_doc},
    {"contains", (PyCFunction)(void (*)(void))contains, METH_FASTCALL, contains_doc},
    {"find_line", (PyCFunction)(void (*)(void))find_line, METH_FASTCALL, find_line_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "promptcast._scan",
    .m_doc = "The byte scans of the relay's full-speed path, in C (see promptcast.scan).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModuleDef_Init(&module_def);
}
