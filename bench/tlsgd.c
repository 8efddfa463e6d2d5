/* A general-dynamic TLS variable in a library the bench dlopens: every
 * access from outside the library's own initial-exec reach goes through
 * __tls_get_addr. */
__attribute__((visibility("default"))) __thread long gd_counter;

long *gd_address(void) { return &gd_counter; }
