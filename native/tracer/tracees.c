/* Two open-addressing hash maps (linear probing, backward-shift deletion):
 * a process may have 10,000 threads and a tracer sees every one at every
 * stop, so lookups must not scan. */
#include "tracees.h"
#include "inject.h"
#include "syscalls.h"

#include <stdlib.h>
#include <string.h>

struct map {
	pid_t *keys; /* 0 = empty slot; tids and pids are never 0 */
	void **vals;
	size_t cap, len; /* cap is 1 << bits */
	unsigned bits;
};

/* 2^32 divided by the golden ratio (Knuth, TAOCP vol. 3, 6.4, "Fibonacci
 * hashing"): the product's top bits spread keys that differ in their low
 * bits only, as the tids of one process's threads do. */
#define FIBONACCI_32 2654435761u
#define FIRST_BITS 6 /* 64 entries: a process or two, no growth */

static struct map threads, processes;

static size_t slot_of(const struct map *m, pid_t key)
{
	return (uint32_t)((uint32_t)key * FIBONACCI_32) >> (32 - m->bits);
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (!p)
		abort(); /* out of memory: dying detaches every tracee unharmed */
	return p;
}

void *xrealloc(void *p, size_t size)
{
	p = realloc(p, size);
	if (!p)
		abort();
	return p;
}

static void map_put(struct map *m, pid_t key, void *val);

static void map_grow(struct map *m)
{
	struct map old = *m;
	m->bits = old.cap ? old.bits + 1 : FIRST_BITS;
	m->cap = (size_t)1 << m->bits;
	m->len = 0;
	m->keys = xcalloc(m->cap, sizeof *m->keys);
	m->vals = xcalloc(m->cap, sizeof *m->vals);
	for (size_t i = 0; i < old.cap; i++)
		if (old.keys[i])
			map_put(m, old.keys[i], old.vals[i]);
	free(old.keys);
	free(old.vals);
}

static void map_put(struct map *m, pid_t key, void *val)
{
	if ((m->len + 1) * 2 > m->cap)
		map_grow(m);
	size_t i = slot_of(m, key);
	while (m->keys[i] && m->keys[i] != key)
		i = (i + 1) & (m->cap - 1);
	if (!m->keys[i])
		m->len++;
	m->keys[i] = key;
	m->vals[i] = val;
}

static void *map_get(const struct map *m, pid_t key)
{
	if (!m->cap)
		return NULL;
	for (size_t i = slot_of(m, key); m->keys[i]; i = (i + 1) & (m->cap - 1))
		if (m->keys[i] == key)
			return m->vals[i];
	return NULL;
}

static void *map_del(struct map *m, pid_t key)
{
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1, i = slot_of(m, key);
	while (m->keys[i] && m->keys[i] != key)
		i = (i + 1) & mask;
	if (!m->keys[i])
		return NULL;
	void *val = m->vals[i];
	/* Shift later members of the probe run back so lookups stay correct. */
	for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
		size_t home = slot_of(m, m->keys[j]);
		if (((j - home) & mask) >= ((j - i) & mask)) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = 0;
	m->vals[i] = NULL;
	m->len--;
	return val;
}

/* Snapshot the keys first so that the callback may delete entries. */
static void map_each(struct map *m, int (*keep)(void *, pid_t), pid_t filter,
		     void (*fn)(void *, void *), void *arg)
{
	size_t n = 0;
	pid_t *keys = xcalloc(m->len + 1, sizeof *keys);
	for (size_t i = 0; i < m->cap; i++)
		if (m->keys[i] && keep(m->vals[i], filter))
			keys[n++] = m->keys[i];
	for (size_t i = 0; i < n; i++) {
		void *val = map_get(m, keys[i]);
		if (val)
			fn(val, arg);
	}
	free(keys);
}

struct thread *thread_find(pid_t tid) { return map_get(&threads, tid); }

struct thread *thread_add(pid_t tid)
{
	struct thread *t = xcalloc(1, sizeof *t);
	t->tid = tid;
	map_put(&threads, tid, t);
	return t;
}

static void count_in(pid_t pid, int delta)
{
	struct process *p = pid ? map_get(&processes, pid) : NULL;
	if (p)
		p->nthreads += (uint32_t)delta;
}

void thread_claim(struct thread *t, pid_t pid)
{
	count_in(t->pid, -1);
	t->pid = pid;
	t->flags |= T_CLAIMED;
	count_in(pid, +1);
}

void thread_remove(pid_t tid)
{
	struct thread *t = map_del(&threads, tid);
	if (t) {
		count_in(t->pid, -1);
		syscalls_thread_free(t);
	}
	free(t);
}

static int thread_in(void *val, pid_t pid) { return ((struct thread *)val)->pid == pid; }

void thread_each_of(pid_t pid, void (*fn)(struct thread *, void *), void *arg)
{
	map_each(&threads, thread_in, pid, (void (*)(void *, void *))fn, arg);
}

static uint32_t count_threads_of(pid_t pid)
{
	uint32_t n = 0;
	for (size_t i = 0; i < threads.cap; i++)
		if (threads.keys[i] && ((struct thread *)threads.vals[i])->pid == pid)
			n++;
	return n;
}

uint32_t thread_count_of(pid_t pid)
{
	struct process *p = map_get(&processes, pid);
	return p ? p->nthreads : count_threads_of(pid);
}

static int any(void *val, pid_t unused) { (void)val; (void)unused; return 1; }

struct process *process_find(pid_t pid) { return map_get(&processes, pid); }

struct process *process_add(pid_t pid)
{
	struct process *p = xcalloc(1, sizeof *p);
	p->pid = pid;
	p->nthreads = count_threads_of(pid); /* a fork child claimed first */
	map_put(&processes, pid, p);
	return p;
}

static void adopt(void *val, void *gone)
{
	struct process *p = val, *g = gone;
	if (p->parent == g->pid)
		p->parent = g->parent;
}

void process_remove(pid_t pid)
{
	struct process *p = map_del(&processes, pid);
	if (p && processes.len)
		map_each(&processes, any, 0, adopt, p);
	if (p) {
		inject_request_free(p->inject);
		ruleset_free(p->rules);
	}
	free(p);
}

void process_each(void (*fn)(struct process *, void *), void *arg)
{
	map_each(&processes, any, 0, (void (*)(void *, void *))fn, arg);
}

uint32_t process_count(void) { return (uint32_t)processes.len; }
