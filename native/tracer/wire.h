/* Framing of protocol.h messages: an output queue that never blocks the
 * tracer, and a reader for the fields of one received frame. */
#ifndef TLSD_WIRE_H
#define TLSD_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* Outgoing frames are queued here and flushed without blocking; a slow
 * daemon makes the queue grow, it never stalls a tracee. */
struct outq {
	uint8_t *data;
	size_t len, cap, frame_start;
	int urgent;            /* holds a frame someone waits for (a reply) */
	uint64_t oldest_ns;    /* when the loop first saw the unsent frames */
};

void out_begin(struct outq *q, uint8_t type);
void out_u8(struct outq *q, uint8_t v);
void out_u32(struct outq *q, uint32_t v);
void out_u64(struct outq *q, uint64_t v);
void out_str(struct outq *q, const char *s, size_t n);
void out_end(struct outq *q);
/* Marks the queue for sending at once rather than with the next batch. */
void out_urgent(struct outq *q);
/* Writes what the socket takes now. Returns -1 when the peer is gone. */
int out_flush(struct outq *q, int fd);

/* A cursor over one received frame. Reads past the end set `bad` and
 * return zeros, so a malformed command is detected once, after parsing. */
struct frame {
	const uint8_t *p, *end;
	int bad;
};

uint8_t in_u8(struct frame *f);
uint32_t in_u32(struct frame *f);
uint64_t in_u64(struct frame *f);
/* A NUL-terminated copy of a string field, or NULL (and bad) on error. */
char *in_str(struct frame *f);

#endif
