/* Compiled core of the byte-level BPE trainer (plugins/tokenizers/bpe.py is the Python side).
 *
 * Two jobs, each an exact replacement for a pure-Python function in bpe.py:
 *
 *   split_count(texts, mode, classify, counts)   == bpe.count_chunks (GPT-4 / GPT-2 patterns)
 *       Pre-splits each text with a hand-written matcher of the GPT-4 (mode 4) or GPT-2 (mode 2)
 *       split regex and adds each chunk (a str) to the dict ``counts``. Character classes
 *       (\p{L}, \p{N}, \s and the case-insensitive contraction letters) come from ``classify``,
 *       a Python function built on the ``regex`` module, asked once per distinct code point, so
 *       the classes are exactly those the reference trainer's regex uses.
 *
 *   train(chunk_counts, num_merges, progress)    == bpe.train_merges_python
 *       Incremental BPE: pair counts in a hash map, a pair -> chunks index, a max-heap with lazy
 *       deletion. Tie rule: highest count, then the smallest (left_id, right_id).
 *
 * Plain C99 + the CPython C API; the GIL is held throughout (the work is short and single-threaded).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Character classes, filled lazily from the Python ``classify`` callback.
 * bit 0: \p{L}, bit 1: \p{N}, bit 2: \s; bits 4..7: contraction letter code (0 none, 1..8 for
 * s d m t l v e r as matched by the pattern: case-insensitively for GPT-4, exactly for GPT-2).
 * ------------------------------------------------------------------------------------------- */
#define C_L 1
#define C_N 2
#define C_S 4
#define UNKNOWN 0xFF
#define NUM_CP 0x110000

enum { LET_S = 1, LET_D, LET_M, LET_T, LET_L, LET_V, LET_E, LET_R };

typedef struct {
    uint8_t *table; /* one byte per code point, UNKNOWN until asked */
    PyObject *classify;
} Classes;

static uint8_t *tables[2] = {NULL, NULL}; /* per mode (GPT-4 / GPT-2): letter codes differ */

static int cls_of(Classes *c, Py_UCS4 cp) {
    uint8_t v = c->table[cp];
    if (v != UNKNOWN) return v;
    PyObject *r = PyObject_CallFunction(c->classify, "I", (unsigned int)cp);
    if (r == NULL) return -1;
    long x = PyLong_AsLong(r);
    Py_DECREF(r);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (x < 0 || x >= UNKNOWN) {
        PyErr_Format(PyExc_ValueError, "classify(%u) returned %ld", (unsigned int)cp, x);
        return -1;
    }
    c->table[cp] = (uint8_t)x;
    return (int)x;
}

#define IS_CRLF(cp) ((cp) == '\r' || (cp) == '\n')

/* Reads code point k of the text; classes through the lazy table. Errors propagate as -1. */
#define RD(k) PyUnicode_READ(kind, data, (k))
#define CLS(var, cp)                        \
    do {                                    \
        int _v = cls_of(cls, (cp));         \
        if (_v < 0) return -1;              \
        (var) = _v;                         \
    } while (0)

/* Whitespace alternatives shared by both patterns. GPT-4 has `\s*[\r\n]` first (with_crlf). */
static Py_ssize_t match_space(Classes *cls, int kind, const void *data, Py_ssize_t n,
                              Py_ssize_t i, int with_crlf) {
    Py_ssize_t k = i, last_nl = -1;
    while (k < n) {
        Py_UCS4 cp = RD(k);
        int v;
        CLS(v, cp);
        if (!(v & C_S)) break;
        if (IS_CRLF(cp)) last_nl = k;
        k++;
    }
    if (k == i) return i + 1; /* not whitespace: cannot happen (every class is handled) */
    if (with_crlf && last_nl >= 0) return last_nl + 1; /* \s*[\r\n] */
    if (k == n) return k;                               /* \s+(?!\S) at the end */
    if (k - i >= 2) return k - 1;                       /* \s+(?!\S) backs off one */
    return k;                                           /* \s+ */
}

/* End of the GPT-4 pattern's match starting at i:
 * '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|
 * \s*[\r\n]|\s+(?!\S)|\s+ */
static Py_ssize_t match_gpt4(Classes *cls, int kind, const void *data, Py_ssize_t n,
                             Py_ssize_t i) {
    Py_UCS4 c = RD(i);
    int vc, v;
    CLS(vc, c);
    if (c == '\'' && i + 1 < n) {
        int l1, l2;
        CLS(l1, RD(i + 1));
        l1 >>= 4;
        if (l1 >= LET_S && l1 <= LET_T) return i + 2;
        if (i + 2 < n && (l1 == LET_L || l1 == LET_V || l1 == LET_R)) {
            CLS(l2, RD(i + 2));
            l2 >>= 4;
            if ((l1 == LET_L && l2 == LET_L) || (l1 != LET_L && l2 == LET_E)) return i + 3;
        }
    }
    /* [^\r\n\p{L}\p{N}]?+\p{L}+ (the optional prefix is possessive: taken when it can be) */
    Py_ssize_t j = (IS_CRLF(c) || (vc & (C_L | C_N))) ? i : i + 1;
    if (j < n) {
        if (j == i) v = vc;
        else CLS(v, RD(j));
        if (v & C_L) {
            Py_ssize_t k = j + 1;
            while (k < n) {
                CLS(v, RD(k));
                if (!(v & C_L)) break;
                k++;
            }
            return k;
        }
    }
    if (vc & C_N) { /* \p{N}{1,3} */
        Py_ssize_t k = i + 1;
        while (k < n && k < i + 3) {
            CLS(v, RD(k));
            if (!(v & C_N)) break;
            k++;
        }
        return k;
    }
    /*  ?[^\s\p{L}\p{N}]++[\r\n]* */
    j = (c == ' ') ? i + 1 : i;
    if (j < n) {
        if (j == i) v = vc;
        else CLS(v, RD(j));
        if (!(v & (C_L | C_N | C_S))) {
            Py_ssize_t k = j + 1;
            while (k < n) {
                CLS(v, RD(k));
                if (v & (C_L | C_N | C_S)) break;
                k++;
            }
            while (k < n && IS_CRLF(RD(k))) k++;
            return k;
        }
    }
    return match_space(cls, kind, data, n, i, 1);
}

/* End of the GPT-2 pattern's match starting at i:
 * '(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static Py_ssize_t match_gpt2(Classes *cls, int kind, const void *data, Py_ssize_t n,
                             Py_ssize_t i) {
    Py_UCS4 c = RD(i);
    int vc, v;
    CLS(vc, c);
    if (c == '\'' && i + 1 < n) {
        int l1, l2;
        CLS(l1, RD(i + 1));
        l1 >>= 4;
        if (l1 >= LET_S && l1 <= LET_T) return i + 2;
        if (i + 2 < n && (l1 == LET_L || l1 == LET_V || l1 == LET_R)) {
            CLS(l2, RD(i + 2));
            l2 >>= 4;
            if ((l1 == LET_L && l2 == LET_L) || (l1 != LET_L && l2 == LET_E)) return i + 3;
        }
    }
    /* three alternatives " ?X+" for X = L, N, other (not \s, L, N) */
    int next = -1;
    if (c == ' ' && i + 1 < n) CLS(next, RD(i + 1));
    for (int alt = 0; alt < 3; alt++) {
        Py_ssize_t j;
        if (next >= 0 && (alt == 0   ? (next & C_L)
                          : alt == 1 ? (next & C_N)
                                     : !(next & (C_L | C_N | C_S))))
            j = i + 1;
        else if (alt == 0 ? (vc & C_L) : alt == 1 ? (vc & C_N) : !(vc & (C_L | C_N | C_S)))
            j = i;
        else
            continue;
        Py_ssize_t k = j + 1;
        while (k < n) {
            CLS(v, RD(k));
            if (alt == 0 ? !(v & C_L) : alt == 1 ? !(v & C_N) : (v & (C_L | C_N | C_S))) break;
            k++;
        }
        return k;
    }
    return match_space(cls, kind, data, n, i, 0);
}

static int get_classes(Classes *cls, int mode, PyObject *classify) {
    int t = (mode == 4) ? 0 : 1;
    if (tables[t] == NULL) {
        tables[t] = (uint8_t *)malloc(NUM_CP);
        if (tables[t] == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memset(tables[t], UNKNOWN, NUM_CP);
    }
    cls->table = tables[t];
    cls->classify = classify;
    return 0;
}

/* Calls fn(start, end) for each chunk of text. Returns -1 on error. */
typedef int (*chunk_fn)(void *ctx, PyObject *text, Py_ssize_t start, Py_ssize_t end);

static int split_text(Classes *cls, int mode, PyObject *text, chunk_fn fn, void *ctx) {
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "texts must be str, not %.100s", Py_TYPE(text)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t i = 0;
    while (i < n) {
        Py_ssize_t e = (mode == 4) ? match_gpt4(cls, kind, data, n, i)
                                   : match_gpt2(cls, kind, data, n, i);
        if (e < 0) return -1;
        if (fn(ctx, text, i, e) < 0) return -1;
        i = e;
    }
    return 0;
}

static int count_chunk(void *ctx, PyObject *text, Py_ssize_t start, Py_ssize_t end) {
    PyObject *counts = (PyObject *)ctx;
    PyObject *piece = PyUnicode_Substring(text, start, end);
    if (piece == NULL) return -1;
    PyObject *old = PyDict_GetItemWithError(counts, piece); /* borrowed */
    long long value = 1;
    if (old != NULL) {
        value = PyLong_AsLongLong(old) + 1;
        if (value == 0 && PyErr_Occurred()) {
            Py_DECREF(piece);
            return -1;
        }
    } else if (PyErr_Occurred()) {
        Py_DECREF(piece);
        return -1;
    }
    PyObject *nv = PyLong_FromLongLong(value);
    int rc = nv ? PyDict_SetItem(counts, piece, nv) : -1;
    Py_XDECREF(nv);
    Py_DECREF(piece);
    return rc;
}

static int append_chunk(void *ctx, PyObject *text, Py_ssize_t start, Py_ssize_t end) {
    PyObject *piece = PyUnicode_Substring(text, start, end);
    if (piece == NULL) return -1;
    int rc = PyList_Append((PyObject *)ctx, piece);
    Py_DECREF(piece);
    return rc;
}

static PyObject *py_split_count(PyObject *self, PyObject *args) {
    PyObject *texts, *classify, *counts;
    int mode;
    if (!PyArg_ParseTuple(args, "OiOO!", &texts, &mode, &classify, &PyDict_Type, &counts))
        return NULL;
    if (mode != 4 && mode != 2) return PyErr_Format(PyExc_ValueError, "mode must be 4 or 2");
    Classes cls;
    if (get_classes(&cls, mode, classify) < 0) return NULL;
    PyObject *it = PyObject_GetIter(texts);
    if (it == NULL) return NULL;
    PyObject *text;
    while ((text = PyIter_Next(it)) != NULL) {
        int rc = split_text(&cls, mode, text, count_chunk, counts);
        Py_DECREF(text);
        if (rc < 0) {
            Py_DECREF(it);
            return NULL;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_split(PyObject *self, PyObject *args) {
    PyObject *text, *classify;
    int mode;
    if (!PyArg_ParseTuple(args, "UiO", &text, &mode, &classify)) return NULL;
    if (mode != 4 && mode != 2) return PyErr_Format(PyExc_ValueError, "mode must be 4 or 2");
    Classes cls;
    if (get_classes(&cls, mode, classify) < 0) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    if (split_text(&cls, mode, text, append_chunk, out) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------------------------------------
 * The merge loop.
 * ------------------------------------------------------------------------------------------- */
#define EMPTY_KEY UINT64_MAX

typedef struct {
    uint64_t key;     /* (left << 32) | right, EMPTY_KEY when the slot is free */
    int64_t count;    /* frequency-weighted occurrences */
    int32_t pushed;   /* last merge step that queued this pair (dedupes the heap pushes) */
    int32_t wlen, wcap;
    int32_t *where;   /* chunks that had the pair when it was counted (lazy: may be stale) */
} Pair;

typedef struct {
    Pair *slots;
    size_t cap, used; /* cap is a power of two */
} PairMap;

static inline uint64_t pair_key(uint32_t a, uint32_t b) { return ((uint64_t)a << 32) | b; }

static inline size_t hash_key(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return (size_t)k;
}

static int map_init(PairMap *m, size_t want) {
    size_t cap = 1024;
    while (cap < want * 2) cap <<= 1;
    m->slots = (Pair *)malloc(cap * sizeof(Pair));
    if (m->slots == NULL) return -1;
    for (size_t i = 0; i < cap; i++) m->slots[i].key = EMPTY_KEY;
    m->cap = cap;
    m->used = 0;
    return 0;
}

static void map_free(PairMap *m) {
    if (m->slots == NULL) return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != EMPTY_KEY) free(m->slots[i].where);
    free(m->slots);
    m->slots = NULL;
}

static int map_grow(PairMap *m) {
    size_t old_cap = m->cap;
    Pair *old = m->slots;
    size_t cap = old_cap * 2;
    Pair *slots = (Pair *)malloc(cap * sizeof(Pair));
    if (slots == NULL) return -1;
    for (size_t i = 0; i < cap; i++) slots[i].key = EMPTY_KEY;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].key == EMPTY_KEY) continue;
        size_t h = hash_key(old[i].key) & (cap - 1);
        while (slots[h].key != EMPTY_KEY) h = (h + 1) & (cap - 1);
        slots[h] = old[i];
    }
    free(old);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

/* The pair's slot, created (count 0) if absent; NULL on out-of-memory. Pointers stay valid only
 * until the next call (the table may grow). */
static Pair *map_get(PairMap *m, uint64_t key) {
    size_t mask = m->cap - 1, h = hash_key(key) & mask;
    while (m->slots[h].key != EMPTY_KEY) {
        if (m->slots[h].key == key) return &m->slots[h];
        h = (h + 1) & mask;
    }
    if ((m->used + 1) * 2 > m->cap) {
        if (map_grow(m) < 0) return NULL;
        return map_get(m, key);
    }
    Pair *p = &m->slots[h];
    p->key = key;
    p->count = 0;
    p->pushed = -1;
    p->wlen = p->wcap = 0;
    p->where = NULL;
    m->used++;
    return p;
}

static Pair *map_find(PairMap *m, uint64_t key) {
    size_t mask = m->cap - 1, h = hash_key(key) & mask;
    while (m->slots[h].key != EMPTY_KEY) {
        if (m->slots[h].key == key) return &m->slots[h];
        h = (h + 1) & mask;
    }
    return NULL;
}

static int where_add(Pair *p, int32_t w) {
    if (p->wlen > 0 && p->where[p->wlen - 1] == w) return 0;
    if (p->wlen == p->wcap) {
        int32_t cap = p->wcap ? p->wcap * 2 : 4;
        int32_t *nw = (int32_t *)realloc(p->where, (size_t)cap * sizeof(int32_t));
        if (nw == NULL) return -1;
        p->where = nw;
        p->wcap = cap;
    }
    p->where[p->wlen++] = w;
    return 0;
}

typedef struct {
    int64_t count;
    uint32_t a, b;
} HeapItem;

typedef struct {
    HeapItem *items;
    size_t len, cap;
} Heap;

/* x ranks before y: higher count, then smaller (a, b). */
static inline int before(const HeapItem *x, const HeapItem *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static int heap_push(Heap *h, int64_t count, uint32_t a, uint32_t b) {
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        HeapItem *ni = (HeapItem *)realloc(h->items, cap * sizeof(HeapItem));
        if (ni == NULL) return -1;
        h->items = ni;
        h->cap = cap;
    }
    size_t i = h->len++;
    HeapItem item = {count, a, b};
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&item, &h->items[parent])) break;
        h->items[i] = h->items[parent];
        i = parent;
    }
    h->items[i] = item;
    return 0;
}

static HeapItem heap_pop(Heap *h) {
    HeapItem top = h->items[0];
    HeapItem last = h->items[--h->len];
    size_t i = 0, n = h->len;
    while (1) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const HeapItem *bi = &last;
        if (l < n && before(&h->items[l], bi)) {
            best = l;
            bi = &h->items[l];
        }
        if (r < n && before(&h->items[r], bi)) best = r;
        if (best == i) break;
        h->items[i] = h->items[best];
        i = best;
    }
    if (n > 0) h->items[i] = last;
    return top;
}

typedef struct {
    int32_t *tokens;  /* all chunks' token ids, back to back */
    int64_t *offset;  /* chunk w starts at tokens[offset[w]] */
    int32_t *len;     /* current length of chunk w */
    int64_t *freq;
    int32_t n;
} Words;

static void words_free(Words *w) {
    free(w->tokens);
    free(w->offset);
    free(w->len);
    free(w->freq);
}

/* Adds delta * freq to pair (a, b); when track, records the chunk and queues the pair. */
static int bump(PairMap *m, uint32_t a, uint32_t b, int64_t delta, int32_t w, int track,
                int32_t step, uint64_t **created, size_t *ncreated, size_t *capcreated) {
    Pair *p = map_get(m, pair_key(a, b));
    if (p == NULL) return -1;
    p->count += delta;
    if (!track) return 0;
    if (where_add(p, w) < 0) return -1;
    if (p->pushed != step) {
        p->pushed = step;
        if (*ncreated == *capcreated) {
            size_t cap = *capcreated ? *capcreated * 2 : 256;
            uint64_t *nc = (uint64_t *)realloc(*created, cap * sizeof(uint64_t));
            if (nc == NULL) return -1;
            *created = nc;
            *capcreated = cap;
        }
        (*created)[(*ncreated)++] = p->key;
    }
    return 0;
}

static PyObject *py_train(PyObject *self, PyObject *args) {
    PyObject *chunk_counts, *progress = Py_None;
    Py_ssize_t num_merges;
    if (!PyArg_ParseTuple(args, "O!n|O", &PyDict_Type, &chunk_counts, &num_merges, &progress))
        return NULL;

    /* chunks of >= 2 bytes with positive counts, in dict order */
    Words W = {0};
    PairMap M = {0};
    Heap H = {0};
    uint64_t *created = NULL;
    size_t ncreated = 0, capcreated = 0;
    PyObject *merges = NULL;
    Py_ssize_t nchunks = PyDict_GET_SIZE(chunk_counts), pos = 0;
    int64_t total = 0;
    PyObject *key, *value;
    while (PyDict_Next(chunk_counts, &pos, &key, &value)) {
        if (!PyBytes_Check(key)) {
            PyErr_Format(PyExc_TypeError, "chunk keys must be bytes, not %.100s",
                         Py_TYPE(key)->tp_name);
            return NULL;
        }
        total += PyBytes_GET_SIZE(key);
    }
    W.tokens = (int32_t *)malloc((size_t)(total + 1) * sizeof(int32_t));
    W.offset = (int64_t *)malloc((size_t)(nchunks + 1) * sizeof(int64_t));
    W.len = (int32_t *)malloc((size_t)(nchunks + 1) * sizeof(int32_t));
    W.freq = (int64_t *)malloc((size_t)(nchunks + 1) * sizeof(int64_t));
    if (!W.tokens || !W.offset || !W.len || !W.freq || map_init(&M, 1 << 16) < 0) {
        PyErr_NoMemory();
        goto fail;
    }
    pos = 0;
    int64_t at = 0;
    while (PyDict_Next(chunk_counts, &pos, &key, &value)) {
        Py_ssize_t n = PyBytes_GET_SIZE(key);
        long long f = PyLong_AsLongLong(value);
        if (f == -1 && PyErr_Occurred()) goto fail;
        if (n < 2 || f <= 0) continue;
        if (n > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "chunk longer than 2**31 bytes");
            goto fail;
        }
        const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(key);
        int32_t w = W.n++;
        W.offset[w] = at;
        W.len[w] = (int32_t)n;
        W.freq[w] = f;
        for (Py_ssize_t i = 0; i < n; i++) W.tokens[at + i] = s[i];
        for (Py_ssize_t i = 0; i + 1 < n; i++) {
            Pair *p = map_get(&M, pair_key(s[i], s[i + 1]));
            if (p == NULL || where_add(p, w) < 0) {
                PyErr_NoMemory();
                goto fail;
            }
            p->count += f;
        }
        at += n;
    }
    for (size_t i = 0; i < M.cap; i++) {
        Pair *p = &M.slots[i];
        if (p->key != EMPTY_KEY && p->count > 0 &&
            heap_push(&H, p->count, (uint32_t)(p->key >> 32), (uint32_t)p->key) < 0) {
            PyErr_NoMemory();
            goto fail;
        }
    }

    merges = PyList_New(0);
    if (merges == NULL) goto fail;
    int32_t step = 0;
    Py_ssize_t pending = 0;
    while (PyList_GET_SIZE(merges) < num_merges && H.len > 0) {
        HeapItem top = heap_pop(&H);
        uint64_t pk = pair_key(top.a, top.b);
        Pair *p = map_find(&M, pk);
        int64_t current = p ? p->count : 0;
        if (current != top.count) { /* stale: requeue with its (lower) current count */
            if (current > 0 && heap_push(&H, current, top.a, top.b) < 0) {
                PyErr_NoMemory();
                goto fail;
            }
            continue;
        }
        uint32_t a = top.a, b = top.b;
        int32_t new_id = 256 + (int32_t)PyList_GET_SIZE(merges);
        PyObject *t = Py_BuildValue("(II)", a, b);
        if (t == NULL || PyList_Append(merges, t) < 0) {
            Py_XDECREF(t);
            goto fail;
        }
        Py_DECREF(t);
        step++;
        /* take the pair's chunk list; the pair itself is gone after this merge */
        int32_t *where = p->where, wlen = p->wlen;
        p->where = NULL;
        p->wlen = p->wcap = 0;
        ncreated = 0;
        for (int32_t q = 0; q < wlen; q++) {
            int32_t w = where[q];
            int32_t *tok = W.tokens + W.offset[w];
            int32_t n = W.len[w];
            int64_t f = W.freq[w];
            /* old pairs around each occurrence (left to right, non-overlapping) */
            int32_t last = -1, found = 0;
            for (int32_t i = 0; i + 1 < n;) {
                if ((uint32_t)tok[i] == a && (uint32_t)tok[i + 1] == b) {
                    found = 1;
                    for (int32_t j = i - 1; j <= i + 1; j++) {
                        if (j > last && j >= 0 && j + 1 < n) {
                            if (bump(&M, (uint32_t)tok[j], (uint32_t)tok[j + 1], -f, w, 0, step,
                                     &created, &ncreated, &capcreated) < 0) {
                                PyErr_NoMemory();
                                free(where);
                                goto fail;
                            }
                            last = j;
                        }
                    }
                    i += 2;
                } else {
                    i++;
                }
            }
            if (!found) continue; /* lazy index: the chunk lost the pair in an earlier merge */
            int32_t r = 0;
            for (int32_t i = 0; i < n;) {
                if (i + 1 < n && (uint32_t)tok[i] == a && (uint32_t)tok[i + 1] == b) {
                    tok[r++] = new_id;
                    i += 2;
                } else {
                    tok[r++] = tok[i++];
                }
            }
            W.len[w] = r;
            /* new pairs: the two around each new token */
            last = -1;
            for (int32_t k = 0; k < r; k++) {
                if (tok[k] != new_id) continue;
                for (int32_t j = k - 1; j <= k; j++) {
                    if (j > last && j >= 0 && j + 1 < r) {
                        if (bump(&M, (uint32_t)tok[j], (uint32_t)tok[j + 1], f, w, 1, step,
                                 &created, &ncreated, &capcreated) < 0) {
                            PyErr_NoMemory();
                            free(where);
                            goto fail;
                        }
                        last = j;
                    }
                }
            }
        }
        free(where);
        p = map_find(&M, pk); /* the table may have grown */
        if (p) p->count = 0;
        for (size_t c = 0; c < ncreated; c++) {
            Pair *np = map_find(&M, created[c]);
            if (np && np->count > 0 &&
                heap_push(&H, np->count, (uint32_t)(np->key >> 32), (uint32_t)np->key) < 0) {
                PyErr_NoMemory();
                goto fail;
            }
        }
        if (progress != Py_None && ++pending >= 256) {
            PyObject *r = PyObject_CallFunction(progress, "n", pending);
            if (r == NULL) goto fail;
            Py_DECREF(r);
            pending = 0;
        }
    }
    if (progress != Py_None && pending) {
        PyObject *r = PyObject_CallFunction(progress, "n", pending);
        if (r == NULL) goto fail;
        Py_DECREF(r);
    }
    words_free(&W);
    map_free(&M);
    free(H.items);
    free(created);
    return merges;

fail:
    Py_XDECREF(merges);
    words_free(&W);
    map_free(&M);
    free(H.items);
    free(created);
    return NULL;
}

static PyMethodDef methods[] = {
    {"split_count", py_split_count, METH_VARARGS,
     "split_count(texts, mode, classify, counts): add each pre-split chunk (str) of texts to the "
     "dict counts; mode 4 = GPT-4 pattern, 2 = GPT-2 pattern."},
    {"split", py_split, METH_VARARGS, "split(text, mode, classify) -> list of chunks."},
    {"train", py_train, METH_VARARGS,
     "train(chunk_counts: dict[bytes, int], num_merges, progress=None) -> [(left, right), ...]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_bpe_core", "Compiled core of the byte-level BPE trainer.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__bpe_core(void) { return PyModule_Create(&module); }
