#include <linux/vfio.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/eventfd.h>

/* the kernel's tools/arch/x86/include/asm/io.h accessors: one mov each */
static inline uint8_t rd8(const volatile void *a) { uint8_t v; asm volatile("movb %1,%0" : "=q"(v) : "m"(*(volatile uint8_t *)a) : "memory"); return v; }
static inline uint16_t rd16(const volatile void *a) { uint16_t v; asm volatile("movw %1,%0" : "=r"(v) : "m"(*(volatile uint16_t *)a) : "memory"); return v; }
static inline uint32_t rd32(const volatile void *a) { uint32_t v; asm volatile("movl %1,%0" : "=r"(v) : "m"(*(volatile uint32_t *)a) : "memory"); return v; }
static inline uint64_t rd64(const volatile void *a) { uint64_t v; asm volatile("movq %1,%0" : "=r"(v) : "m"(*(volatile uint64_t *)a) : "memory"); return v; }
static inline void wr8(uint8_t v, volatile void *a) { asm volatile("movb %0,%1" : : "q"(v), "m"(*(volatile uint8_t *)a) : "memory"); }
static inline void wr16(uint16_t v, volatile void *a) { asm volatile("movw %0,%1" : : "r"(v), "m"(*(volatile uint16_t *)a) : "memory"); }
static inline void wr32(uint32_t v, volatile void *a) { asm volatile("movl %0,%1" : : "r"(v), "m"(*(volatile uint32_t *)a) : "memory"); }
static inline void wr64(uint64_t v, volatile void *a) { asm volatile("movq %0,%1" : : "r"(v), "m"(*(volatile uint64_t *)a) : "memory"); }

static void setup(void) { cdev_setup("/dev/vfio/devices/vfio0", 6); /* memory, bus master */ }
static struct vfio_region_info region(int i) {
  struct vfio_region_info r = { .argsz = sizeof(r), .index = i };
  if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &r)) { perror("region"); exit(2); }
  return r;
}
/* as the selftests' vfio_pci_device.c maps a BAR: MAP_FIXED over a PROT_NONE reservation, then MADV_HUGEPAGE */
static volatile uint8_t *map_bar(int i) {
  struct vfio_region_info r = region(i);
  void *res = mmap(NULL, r.size * 2, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  void *at = (void *)(((uintptr_t)res + r.size - 1) & ~(uintptr_t)(r.size - 1));
  void *va = mmap(at, r.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, dev, r.offset);
  if (va == MAP_FAILED) { perror("mmap bar"); exit(2); }
  OUT("fixed", "%d", va == at);
  OUT("madvise", "%d", madvise(va, r.size, MADV_HUGEPAGE));
  return va;
}
static int set_irqs(uint32_t flags, uint32_t index, uint32_t start, uint32_t count, const void *data, size_t dlen) {
  char buf[sizeof(struct vfio_irq_set) + 64];
  struct vfio_irq_set *s = (void *)buf;
  s->argsz = sizeof(*s) + dlen; s->flags = flags; s->index = index; s->start = start; s->count = count;
  memcpy(s->data, data, dlen);
  return ioctl(dev, VFIO_DEVICE_SET_IRQS, s);
}
static long efd_read(int fd) {
  uint64_t v = 0;
  if (read(fd, &v, 8) != 8) return -errno;
  return (long)v;
}

static int maps_lines(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  int n = 0, c;
  while ((c = fgetc(f)) != EOF) n += c == '\n';
  fclose(f);
  return n;
}

static sigjmp_buf jb;
static volatile int *volatile null_page = (int *)8;
static volatile int own_faults;
static void own_handler(int sig) { (void)sig; own_faults++; siglongjmp(jb, 1); }

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "copy";
  setup();
  struct vfio_region_info r0 = region(0), r2 = region(2), rc = region(VFIO_PCI_CONFIG_REGION_INDEX);
  OUT("bar0", "%llu/%d", (unsigned long long)r0.size, (r0.flags & VFIO_REGION_INFO_FLAG_MMAP) != 0);
  OUT("bar2", "%llu/%d", (unsigned long long)r2.size, (r2.flags & VFIO_REGION_INFO_FLAG_MMAP) != 0);
  OUT("config_mmap", "%d", (rc.flags & VFIO_REGION_INFO_FLAG_MMAP) != 0);
  if (!strcmp(mode, "copy")) {
    volatile uint8_t *bar = map_bar(0);
    OUT("id", "0x%x", rd32(bar));
    OUT("id8", "0x%x/0x%x", rd8(bar + 1), rd16(bar + 2));
    OUT("id_plain", "0x%x", *(volatile uint32_t *)bar);
    OUT("id_byte", "%c", *(volatile char *)(bar + 3));
    uint8_t *buf = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    OUT("map", "%d", map(buf, 8192, 0x100000));
    int mr = map((void *)bar, 4096, 0x200000); /* iommufd cannot pin a VM_PFNMAP mapping */
    OUT("map_bar", "%d/%d", mr, errno);
    strcpy((char *)buf, "moved by a doorbell rung through the BAR mmap");
    wr64(0x100000, bar + MCPY_SRC);
    *(volatile uint64_t *)(bar + MCPY_DST) = 0x101000; /* a plain C store */
    wr32(64, bar + MCPY_LEN);
    wr32(0, bar + MCPY_LEN + 4);
    OUT("len_back", "%llu", (unsigned long long)rd64(bar + MCPY_LEN));
    *(volatile uint32_t *)(bar + MCPY_DOORBELL) = 1; /* an immediate store (C7 at -O2) */
    OUT("status", "%u", rd32(bar + MCPY_STATUS));
    OUT("status_w", "%u", rd16(bar + MCPY_STATUS));
    OUT("dst", "%s", (char *)buf + 4096);
    OUT("count", "%u", *(volatile uint32_t *)(bar + 0x30));
    wr8(1, bar + MCPY_DOORBELL);
    OUT("count2", "%u", *(volatile uint16_t *)(bar + 0x30));
    /* the program's own SIGSEGV handler still gets its own faults, before and after */
    signal(SIGSEGV, own_handler);
    if (!sigsetjmp(jb, 1)) *null_page = 1;
    struct sigaction sa = { .sa_handler = own_handler }, old;
    sigaction(SIGSEGV, &sa, &old);
    OUT("old_is_own", "%d", old.sa_handler == own_handler);
    if (!sigsetjmp(jb, 1)) null_page[2] = 1;
    OUT("own_faults", "%d", own_faults);
    OUT("id_after", "0x%x", rd32(bar));
    pid_t pid = fork();
    if (pid == 0) _exit(rd32(bar) == 0x5950434d ? 42 : 1);
    int st = 0;
    waitpid(pid, &st, 0);
    OUT("child", "%d", WEXITSTATUS(st));
    OUT("munmap", "%d", munmap((void *)bar, r0.size));
    /* gone: the next access is the program's own fault again */
    if (!sigsetjmp(jb, 1)) rd32(bar);
    OUT("own_faults2", "%d", own_faults);
    return 0;
  }
  if (!strcmp(mode, "forms")) {
    volatile uint8_t *bar = map_bar(0);
    volatile uint8_t *len = bar + MCPY_LEN;
    uint64_t rax = 0x1111111111111111ull;
    asm volatile("movb (%1), %%ah" : "+a"(rax) : "r"(bar + 1) : "memory");
    OUT("ah", "0x%llx", (unsigned long long)rax);
    uint64_t rcx = 0x5a00;
    asm volatile("movb %%ch, (%1)" : : "c"(rcx), "r"(len) : "memory");
    OUT("ch_store", "0x%llx", (unsigned long long)rd64(len));
    rax = 0x1111111111111111ull;
    asm volatile("movw (%1), %%ax" : "+a"(rax) : "r"(bar) : "memory");
    OUT("ax", "0x%llx", (unsigned long long)rax);
    rax = 0x1111111111111111ull;
    asm volatile("movl (%1), %%eax" : "+a"(rax) : "r"(bar) : "memory");
    OUT("eax", "0x%llx", (unsigned long long)rax);
    uint64_t out;
    asm volatile("mov %1, %%r8\n\tmov $6, %%r9\n\tmovl (%%r8,%%r9,4), %%r10d\n\tmov %%r10, %0"
                 : "=r"(out) : "r"(bar) : "r8", "r9", "r10", "memory");
    OUT("sib", "0x%llx", (unsigned long long)out); /* LEN low dword, at 6*4 = 0x18 */
    asm volatile("movb $0x80, (%0)" : : "r"(len) : "memory");
    asm volatile("movb $0xff, 1(%0)" : : "r"(len) : "memory");
    int64_t s;
    asm volatile("movsbq (%1), %0" : "=r"(s) : "r"(len) : "memory");
    OUT("movsb", "%lld", (long long)s);
    asm volatile("movswq (%1), %0" : "=r"(s) : "r"(len) : "memory");
    OUT("movsw", "%lld", (long long)s);
    asm volatile("movq $-2, (%0)" : : "r"(len) : "memory");
    OUT("imm32_sx", "0x%llx", (unsigned long long)rd64(len));
    asm volatile("movw $0x1234, (%0)" : : "r"(len) : "memory");
    asm volatile("movslq (%1), %0" : "=r"(s) : "r"(len) : "memory");
    OUT("movslq", "%lld", (long long)s);
    asm volatile("movzbl 1(%1), %k0" : "=r"(out) : "r"(len) : "memory");
    OUT("movzb", "0x%llx", (unsigned long long)out);
    /* errors: the kernel's errno, nothing left behind */
    int before = maps_lines();
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, dev, 0);
    OUT("private", "%d/%d", p == MAP_FAILED, errno);
    p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, dev, 0);
    OUT("too_long", "%d/%d", p == MAP_FAILED, errno);
    p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, dev, (uint64_t)VFIO_PCI_CONFIG_REGION_INDEX << 40);
    OUT("config", "%d/%d", p == MAP_FAILED, errno);
    OUT("maps_same", "%d", maps_lines() == before);
    /* mremap: growing a device mapping is EFAULT; moving it takes the device along */
    p = mremap((void *)bar, 4096, 8192, MREMAP_MAYMOVE);
    OUT("grow", "%d/%d", p == MAP_FAILED, errno);
    void *dst = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    p = mremap((void *)bar, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
    OUT("moved", "%d", p == dst);
    OUT("id_moved", "0x%x", rd32(p));
    signal(SIGSEGV, own_handler);
    if (!sigsetjmp(jb, 1)) rd32(bar);
    OUT("old_faults", "%d", own_faults);
    return 0;
  }
  if (!strcmp(mode, "irq")) {
    struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = VFIO_PCI_MSIX_IRQ_INDEX };
    ioctl(dev, VFIO_DEVICE_GET_IRQ_INFO, &ii);
    OUT("msix_count", "%u", ii.count);
    ii.index = VFIO_PCI_MSI_IRQ_INDEX;
    ioctl(dev, VFIO_DEVICE_GET_IRQ_INFO, &ii);
    OUT("msi_count", "%u", ii.count);
    int efd[2] = { eventfd(0, EFD_NONBLOCK), eventfd(0, EFD_NONBLOCK) };
    uint32_t idx = argc > 2 && !strcmp(argv[2], "msi") ? VFIO_PCI_MSI_IRQ_INDEX : VFIO_PCI_MSIX_IRQ_INDEX;
    uint32_t n = idx == VFIO_PCI_MSI_IRQ_INDEX ? 1 : 2;
    OUT("enable", "%d", set_irqs(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, idx, 0, n, efd, 4 * n));
    OUT("idle", "%ld", efd_read(efd[0]));
    OUT("trigger", "%d", set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, idx, 0, 1, NULL, 0));
    OUT("after_trigger", "%ld", efd_read(efd[0]));
    OUT("again", "%ld", efd_read(efd[0]));
    uint8_t yes[2] = { 0, 1 };
    if (n == 2) {
      OUT("bool", "%d", set_irqs(VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, idx, 0, 2, yes, 2));
      OUT("bool0", "%ld", efd_read(efd[0]));
      OUT("bool1", "%ld", efd_read(efd[1]));
    }
    /* the device's completion interrupt (vector 0) is on the eventfd when the doorbell store returns */
    volatile uint8_t *bar = map_bar(0);
    uint8_t *buf = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    map(buf, 8192, 0x100000);
    wr64(0x100000, bar + MCPY_SRC);
    wr64(0x101000, bar + MCPY_DST);
    wr64(16, bar + MCPY_LEN);
    wr32(1, bar + MCPY_DOORBELL);
    OUT("completion", "%ld", efd_read(efd[0]));
    /* through pwrite of the region too */
    uint32_t one = 1;
    pwrite(dev, &one, 4, MCPY_DOORBELL);
    OUT("completion_pwrite", "%ld", efd_read(efd[0]));
    OUT("disable", "%d", set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, idx, 0, 0, NULL, 0));
    wr32(1, bar + MCPY_DOORBELL);
    OUT("after_disable", "%ld", efd_read(efd[0]));
    int r = set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, idx, 0, 1, NULL, 0);
    OUT("trigger_disabled", "%d/%d", r, errno);
    int pfd[2];
    pipe(pfd);
    r = set_irqs(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, idx, 0, 1, pfd, 4);
    OUT("not_eventfd", "%d/%d", r, errno);
    r = set_irqs(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, idx, 0, 1, (int[]){ 700 }, 4);
    OUT("bad_fd", "%d/%d", r, errno);
    return 0;
  }
  if (!strcmp(mode, "unknown")) {
    volatile uint8_t *bar = map_bar(0);
    float f;
    asm volatile("movss (%1), %0" : "=x"(f) : "r"(bar) : "memory");
    OUT("survived", "%f", f);
    return 0;
  }
  if (!strcmp(mode, "decode-off")) {
    volatile uint8_t *bar = map_bar(0);
    uint16_t cmd = 0;
    pread(dev, &cmd, 2, (7ull << 40) + 4);
    cmd &= ~2;
    pwrite(dev, &cmd, 2, (7ull << 40) + 4);
    OUT("id", "0x%x", rd32(bar));
    return 0;
  }
  return 1;
}
