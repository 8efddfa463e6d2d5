#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void reserve(struct outq *q, size_t more)
{
	if (q->len + more <= q->cap)
		return;
	size_t cap = q->cap ? q->cap : 4096;
	while (cap < q->len + more)
		cap *= 2;
	uint8_t *data = realloc(q->data, cap);
	if (!data)
		abort(); /* out of memory: dying detaches every tracee unharmed */
	q->data = data;
	q->cap = cap;
}

static void put(struct outq *q, const void *src, size_t n)
{
	reserve(q, n);
	memcpy(q->data + q->len, src, n);
	q->len += n;
}

/* x86-64 is little-endian, so the in-memory bytes are the wire bytes. */
void out_u8(struct outq *q, uint8_t v) { put(q, &v, 1); }
void out_u32(struct outq *q, uint32_t v) { put(q, &v, 4); }
void out_u64(struct outq *q, uint64_t v) { put(q, &v, 8); }

void out_str(struct outq *q, const char *s, size_t n)
{
	out_u32(q, (uint32_t)n);
	put(q, s, n);
}

void out_urgent(struct outq *q) { q->urgent = 1; }

void out_begin(struct outq *q, uint8_t type)
{
	q->frame_start = q->len;
	out_u32(q, 0);
	out_u8(q, type);
}

void out_end(struct outq *q)
{
	uint32_t n = (uint32_t)(q->len - q->frame_start - 4);
	memcpy(q->data + q->frame_start, &n, 4);
}

int out_flush(struct outq *q, int fd)
{
	size_t done = 0;
	while (done < q->len) {
		ssize_t n = write(fd, q->data + done, q->len - done);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		return -1;
	}
	memmove(q->data, q->data + done, q->len - done);
	q->len -= done;
	if (q->len == 0) {
		q->urgent = 0;
		q->oldest_ns = 0;
	}
	return 0;
}

static int take(struct frame *f, void *dst, size_t n)
{
	if (f->bad || (size_t)(f->end - f->p) < n) {
		f->bad = 1;
		memset(dst, 0, n);
		return -1;
	}
	memcpy(dst, f->p, n);
	f->p += n;
	return 0;
}

uint8_t in_u8(struct frame *f)
{
	uint8_t v;
	take(f, &v, 1);
	return v;
}

uint32_t in_u32(struct frame *f)
{
	uint32_t v;
	take(f, &v, 4);
	return v;
}

uint64_t in_u64(struct frame *f)
{
	uint64_t v;
	take(f, &v, 8);
	return v;
}

char *in_str(struct frame *f)
{
	uint32_t n = in_u32(f);
	if (f->bad || (size_t)(f->end - f->p) < n || memchr(f->p, 0, n)) {
		f->bad = 1;
		return NULL;
	}
	char *s = malloc((size_t)n + 1);
	if (!s)
		abort();
	memcpy(s, f->p, n);
	s[n] = 0;
	f->p += n;
	return s;
}
