/* Loading libtlsshim.so without ld.so (shim_image.h): what origin's and
 * elf_loader's minimal loaders do (docs/shim.md "Injection"),
 * for a freestanding object with relative relocations only. */
#include "shim_image.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../shim/inject.h"

#define PAGE 4096ull
#define MAX_SHIM_FILE (16u << 20)

static uint64_t page_down(uint64_t v) { return v & ~(PAGE - 1); }
static uint64_t page_up(uint64_t v) { return (v + PAGE - 1) & ~(PAGE - 1); }

static int refuse(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return -1;
}

static int in_file(const struct shim_image *im, uint64_t off, uint64_t len)
{
	return off <= im->file_len && len <= im->file_len - off;
}

/* The file offset of a virtual address in a PT_LOAD's file bytes. */
static int vaddr_to_offset(const Elf64_Phdr *ph, int n, uint64_t vaddr, uint64_t *off)
{
	for (int i = 0; i < n; i++) {
		if (ph[i].p_type == PT_LOAD && vaddr >= ph[i].p_vaddr && vaddr - ph[i].p_vaddr < ph[i].p_filesz) {
			*off = ph[i].p_offset + (vaddr - ph[i].p_vaddr);
			return 0;
		}
	}
	return -1;
}

static int read_file(const char *path, struct shim_image *im, char *why, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		return refuse(why, len, "cannot read %s: %s", path, strerror(err));
	}
	if (!S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr) || st.st_size > MAX_SHIM_FILE) {
		close(fd);
		return refuse(why, len, "%s is not a shim library", path);
	}
	im->file_len = (size_t)st.st_size;
	im->file = malloc(im->file_len);
	if (!im->file)
		abort();
	ssize_t n = pread(fd, im->file, im->file_len, 0);
	close(fd);
	if (n != (ssize_t)im->file_len)
		return refuse(why, len, "cannot read %s", path);
	return 0;
}

/* The injection ABI's symbols, from .dynsym through the section headers. */
static int find_symbols(struct shim_image *im, char *why, size_t len)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)im->file;
	if (!in_file(im, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr)) || eh->e_shentsize != sizeof(Elf64_Shdr))
		return refuse(why, len, "the shim has no section headers");
	const Elf64_Shdr *sh = (const Elf64_Shdr *)(im->file + eh->e_shoff);
	for (int i = 0; i < eh->e_shnum; i++) {
		if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_link >= eh->e_shnum)
			continue;
		const Elf64_Shdr *strs = &sh[sh[i].sh_link];
		if (!in_file(im, sh[i].sh_offset, sh[i].sh_size) || !in_file(im, strs->sh_offset, strs->sh_size))
			break;
		const Elf64_Sym *sym = (const Elf64_Sym *)(im->file + sh[i].sh_offset);
		for (uint64_t k = 0; k < sh[i].sh_size / sizeof *sym; k++) {
			if (sym[k].st_name >= strs->sh_size || sym[k].st_shndx == SHN_UNDEF)
				continue;
			const char *name = (const char *)im->file + strs->sh_offset + sym[k].st_name;
			if (!memchr(name, 0, strs->sh_size - sym[k].st_name))
				continue;
			if (!strcmp(name, "tlsshim_inject_entry"))
				im->entry = sym[k].st_value;
			else if (!strcmp(name, "tlsshim_engine_entry"))
				im->engine_entry = sym[k].st_value;
			else if (!strcmp(name, "tlsshim_inject_gadget"))
				im->gadget = sym[k].st_value;
			else if (!strcmp(name, "tlsshim_inject_return"))
				im->sigreturn = sym[k].st_value;
			else if (!strcmp(name, "tlsshim_inject_area") && sym[k].st_size >= TLSSHIM_INJECT_AREA)
				im->area = sym[k].st_value;
		}
	}
	if (!im->entry || !im->gadget || !im->sigreturn || !im->area || !im->engine_entry)
		return refuse(why, len, "the shim does not export the injection entry points");
	return 0;
}

static int read_dynamic(struct shim_image *im, const Elf64_Phdr *ph, int n, const Elf64_Phdr *dyn, char *why, size_t len)
{
	if (!in_file(im, dyn->p_offset, dyn->p_filesz))
		return refuse(why, len, "the shim's dynamic section is outside the file");
	const Elf64_Dyn *d = (const Elf64_Dyn *)(im->file + dyn->p_offset);
	uint64_t rela = 0, relr = 0;
	for (uint64_t i = 0; i < dyn->p_filesz / sizeof *d && d[i].d_tag != DT_NULL; i++) {
		switch (d[i].d_tag) {
		case DT_NEEDED: return refuse(why, len, "the shim needs another library (DT_NEEDED)");
		case DT_JMPREL: return refuse(why, len, "the shim has PLT relocations (DT_JMPREL)");
		case DT_REL: return refuse(why, len, "the shim has REL relocations");
		case DT_TEXTREL: return refuse(why, len, "the shim has text relocations");
		case DT_RELA: rela = d[i].d_un.d_ptr; break;
		case DT_RELASZ: im->rela_len = d[i].d_un.d_val; break;
		case DT_RELR: relr = d[i].d_un.d_ptr; break;
		case DT_RELRSZ: im->relr_len = d[i].d_un.d_val; break;
		}
	}
	if ((im->rela_len && (vaddr_to_offset(ph, n, rela, &im->rela) || !in_file(im, im->rela, im->rela_len))) ||
	    (im->relr_len && (vaddr_to_offset(ph, n, relr, &im->relr) || !in_file(im, im->relr, im->relr_len))))
		return refuse(why, len, "the shim's relocations are outside the file");
	return 0;
}

int shim_image_load(const char *path, struct shim_image *im, char *why, size_t len)
{
	*im = (struct shim_image){ 0 };
	if (read_file(path, im, why, len))
		return -1;
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)im->file;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_type != ET_DYN || eh->e_machine != EM_X86_64)
		return refuse(why, len, "%s is not an x86-64 shared object", path);
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || !in_file(im, eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr)))
		return refuse(why, len, "%s has no program headers", path);
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(im->file + eh->e_phoff);
	const Elf64_Phdr *dyn = NULL;
	for (int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *p = &ph[i];
		if (p->p_type == PT_INTERP)
			return refuse(why, len, "the shim asks for a dynamic linker (PT_INTERP)");
		if (p->p_type == PT_TLS)
			return refuse(why, len, "the shim has thread-local storage of its own (PT_TLS)");
		if (p->p_type == PT_DYNAMIC)
			dyn = p;
		if (p->p_type == PT_GNU_RELRO) {
			im->relro_start = page_down(p->p_vaddr); /* as ld.so (_dl_protect_relro) */
			im->relro_end = page_down(p->p_vaddr + p->p_memsz);
			if (im->relro_start > im->relro_end)
				im->relro_start = im->relro_end = 0;
		}
		if (p->p_type != PT_LOAD)
			continue;
		if (im->nseg == SHIM_MAX_SEGMENTS || p->p_filesz > p->p_memsz || (p->p_offset - p->p_vaddr) % PAGE ||
		    !in_file(im, p->p_offset, p->p_filesz) || p->p_vaddr + p->p_memsz > MAX_SHIM_FILE * 8ull)
			return refuse(why, len, "the shim's segments cannot be loaded");
		im->seg[im->nseg++] = (struct shim_segment){
			.start = page_down(p->p_vaddr), .end = page_up(p->p_vaddr + p->p_memsz),
			.prot = (p->p_flags & PF_R ? PROT_READ : 0) | (p->p_flags & PF_W ? PROT_WRITE : 0) |
				(p->p_flags & PF_X ? PROT_EXEC : 0),
		};
		if ((p->p_flags & (PF_W | PF_X)) == (PF_W | PF_X))
			return refuse(why, len, "the shim has a writable and executable segment");
		if (im->seg[im->nseg - 1].end > im->span)
			im->span = im->seg[im->nseg - 1].end;
	}
	if (!im->nseg || !dyn)
		return refuse(why, len, "the shim has nothing to load");
	if (read_dynamic(im, ph, eh->e_phnum, dyn, why, len) || find_symbols(im, why, len))
		return -1;
	if (im->entry >= im->span || im->engine_entry >= im->span || im->gadget >= im->span || im->sigreturn >= im->span ||
	    im->area + TLSSHIM_INJECT_AREA > im->span)
		return refuse(why, len, "the shim's entry points are outside it");
	/* Only relative relocations: anything else needs a symbol lookup. */
	const Elf64_Rela *r = (const Elf64_Rela *)(im->file + im->rela);
	for (uint64_t i = 0; i < im->rela_len / sizeof *r; i++) {
		uint32_t type = ELF64_R_TYPE(r[i].r_info);
		if (type != R_X86_64_RELATIVE && type != R_X86_64_NONE)
			return refuse(why, len, "the shim has a relocation of type %u (only relative ones are allowed)", type);
		if (r[i].r_offset + 8 > im->span)
			return refuse(why, len, "a relocation of the shim is outside it");
	}
	return 0;
}

/* DT_RELR (the generic ABI's compact relative relocations): an even word
 * is an address to relocate, an odd one a bitmap of the 63 words after
 * the last address. */
static void apply_relr(uint8_t *img, uint64_t span, const uint64_t *relr, uint64_t n, uint64_t base)
{
	uint64_t where = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t e = relr[i];
		if (!(e & 1)) {
			where = e;
			if (where + 8 <= span)
				*(uint64_t *)(img + where) += base;
			where += 8;
			continue;
		}
		for (uint64_t bit = 0, at = where; (e >>= 1); bit++, at += 8)
			if ((e & 1) && at + 8 <= span)
				*(uint64_t *)(img + at) += base;
		where += 63 * 8;
	}
}

uint8_t *shim_image_build(const struct shim_image *im, uint64_t base)
{
	uint8_t *img = calloc(1, im->span);
	if (!img)
		abort();
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)im->file;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(im->file + eh->e_phoff);
	for (int i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD)
			memcpy(img + ph[i].p_vaddr, im->file + ph[i].p_offset, ph[i].p_filesz);
	const Elf64_Rela *r = (const Elf64_Rela *)(im->file + im->rela);
	for (uint64_t i = 0; i < im->rela_len / sizeof *r; i++)
		if (ELF64_R_TYPE(r[i].r_info) == R_X86_64_RELATIVE)
			*(uint64_t *)(img + r[i].r_offset) = base + (uint64_t)r[i].r_addend;
	apply_relr(img, im->span, (const uint64_t *)(im->file + im->relr), im->relr_len / 8, base);
	return img;
}

void shim_image_free(struct shim_image *im)
{
	free(im->file);
	im->file = NULL;
}
