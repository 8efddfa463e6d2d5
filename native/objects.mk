# Shared by the native Makefiles: objects in build/ (OBJS, set by each
# Makefile), rebuilt when a source or any header changes. Included after
# each file's first (default) target.
build/%.o: %.c *.h | build
	$(CC) $(CFLAGS) -c -o $@ $<

build:
	mkdir -p build

clean:
	rm -rf build

.PHONY: clean
