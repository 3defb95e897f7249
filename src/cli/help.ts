/** --help text of each command (docs/cli.md says the same at more length). */
export const HELP: Record<string, string> = {
  main: `iommufd-sim: the Linux IOMMU stack (iommufd, VFIO, noiommu, PPC64 sPAPR) on a simulated machine

usage: iommufd-sim <command> [options]

commands:
  demo <mode>            guided run of a mode: noiommu, iommu, ppc64, vfio-group
  run <scenario.yaml>    run a scenario file and check its expectations
  trace <scenario.yaml>  run it and print every system call, strace-style
  inspect <scenario.yaml> run it, then show IOASes, HWPTs, page tables, pins, counters
  explain <scenario.yaml> run it, then explain each failed call in kernel terms
  record <scenario.yaml> [-o out.yaml]  run it and write it back as a fully explicit scenario
  exec [machine options] -- PROGRAM [ARGS...]  run a real program against the model
  serve --socket PATH [machine options]  a machine several real programs join
  qemu [--qemu 7.2|10] [--mmap]  a real QEMU with the model's device assigned, driven by qtest
  web [scenario.yaml]    open the run in a browser view (--port N, --export DIR)
  help [command]         this text, or a command's

options (every command):
  --json       machine-readable output (run, inspect, explain)
  --quiet, -q  print only what was asked for and failures
  --verbose, -v  print every step
  --color / --no-color  force colour on or off (default: on a terminal only)
  --help, -h   help for the command

exit codes: 0 passed; 1 an expectation failed; 2 usage error or a part of the
model that is not there yet; 3 the scenario file is wrong.

docs: docs/getting-started.md, docs/cli.md, docs/scenario-format.md`,
  demo: `usage: iommufd-sim demo <noiommu|iommu|ppc64|vfio-group> [--record out.yaml] [--quiet|--verbose]

A guided run on a fresh simulated machine: each step prints the system call
as strace would (structs decoded from the uapi tables), its result, and a few
lines saying what it shows. Every line comes from the model; a mode whose
subsystem is not modelled yet says so and exits with code 2.

  noiommu     the machine as it boots: /dev, /sys, memory (mmap, hugetlb,
              memfd), /dev/iommu, and what of the noiommu cdev path exists
  iommu       iommufd + a VFIO device cdev: IOAS, map, attach, a DMA
  ppc64       the sPAPR TCE container and its DMA windows
  vfio-group  the legacy path: group, container (type1), MAP_DMA

The scenario behind each demo is examples/demo-<mode>.yaml. --record out.yaml
also writes the run as a scenario (every system call, explicit), which
\`iommufd-sim run out.yaml\` replays.`,
  record: `usage: iommufd-sim record <scenario.yaml> [-o out.yaml]

Run the scenario with the trace on, then write what ran as a fully explicit
scenario (stdout, or -o FILE): the machine's options, the processes, every
system call as an ioctl/mmap/... step with its struct decoded by field name,
user pointers through the mmap variables ($buf + 0x1000), and every result as
an expectation (rc, errno, out fields, data). Helpers such as device_dma
become the calls they make; checks and narration are not system calls and
are left out. Replaying the output gives the same trace.

A run that stops at a failed expectation is still recorded (up to that step)
and exits with code 1.`,
  run: `usage: iommufd-sim run <scenario.yaml> [--json] [--quiet|--verbose]

Boot the machine the file describes, run its steps, and check every
expectation. Stops at the first expectation that does not hold, naming the
step and its line; exit code 1. --verbose prints each step as it runs;
--json prints { ok, steps, failure, counters } for tools.

Format: docs/scenario-format.md. Examples: examples/*.yaml.`,
  trace: `usage: iommufd-sim trace <scenario.yaml> [--verbose] [--pid]

Run the scenario and print every system call strace-style, e.g.
  ioctl(3, IOMMU_IOAS_MAP, {size=40, flags=FIXED_IOVA|WRITEABLE|READABLE, ...}) = 0
failures with their errno name and the rule behind it. --verbose puts each
step's note above its calls; --pid prefixes each line with the process id.`,
  inspect: `usage: iommufd-sim inspect <scenario.yaml> [--json]

Run the scenario, then show the state it left: per iommufd, the IOASes and
their mapped areas, HWPTs with their page table level by level (raw PTEs in
hex and what they mean), bound devices; then pins and accounting
(m.debug.counters()), the DMA log and taint.`,
  explain: `usage: iommufd-sim explain <scenario.yaml> [--json]

Run the scenario, then list every failed call (m.debug.failures()) with the
rule that produced its errno, in kernel terms, and whether the scenario
expected it.`,
  exec: `usage: iommufd-sim exec [--iommu amd|intel|mock|spapr|none] [--kernel latest|6.12]
                        [--kconfig NAME=y|n]... [--param NAME=VALUE]... [--pci BDF=KIND]...
                        [--hugepages SIZE=N[,SIZE=N]] [--seed N] [--noiommu-revision v4|v7|v9]
                        [--memory SIZE] [--spapr platform=P|pgsizes=L,...]...
                        [--trace FILE] [--report] -- PROGRAM [ARGS...]

Run an unmodified program (C, Rust, anything on glibc) against a simulated
machine: boot it (default: one memcpy device at 0000:00:04.0, an AMD IOMMU),
set the module parameters, bind every PCI function to vfio-pci, and run
PROGRAM with the bridge shim preloaded (LD_PRELOAD). PROGRAM inherits stdin,
stdout, stderr and the environment; the exit status is PROGRAM's (128 + N
when signal N killed it).

The shim forwards what touches the model's files (/dev/iommu, /dev/vfio/**,
/sys/bus/pci/**, /sys/kernel/iommu_groups/**, /sys/module/vfio*/parameters,
/sys/kernel/mm/hugepages, fail-nth, /sys/kernel/debug fault injection and
Intel IOMMU page tables) and passes everything else to the real kernel.
ioctl arguments stay pointers into the program's own memory; pinned pages
and device DMA use the program's real bytes. mmap of a BAR gives a real
mapping whose loads and stores (plain mov instructions, as readl/writel
compile to) trap into the shim and reach the model's device; interrupts the
device raises (MSI, MSI-X, SET_IRQS loopback) arrive on the program's real
eventfds before the call or access that caused them returns.

  --iommu K            amd (default), intel, mock (the selftest's), spapr, none
  --kernel P           UAPI profile: latest (default) or 6.12
  --kconfig NAME=y|n   a Kconfig symbol (e.g. IOMMUFD_TEST=y), repeatable
  --param NAME=VALUE   a module parameter, set before any driver binds
                       (e.g. vfio.enable_unsafe_noiommu_mode=1), repeatable
  --pci BDF=KIND       a PCI function (kind: memcpy, memcpy-pf, ioat), repeatable
  --hugepages SIZE=N   hugetlb pools at boot, as hugepages= does (sizes 2M, 1G;
                       e.g. 2M=256): only these pages, other sizes empty.
                       Default: unlimited pools. The program's
                       memfd_create(MFD_HUGETLB) memory comes from them, and
                       MAP_HUGETLB memory when the host has no huge pages
  --seed N             the machine's seed (deterministic runs)
  --noiommu-revision R the noiommu GET_PA revision: v4, v7, v9 (default)
  --memory SIZE        physical memory (default 4G; K, M, G, T suffixes)
  --spapr K=V          PPC64 (--iommu spapr): platform=powernv|pseries,
                       pgsizes=12,16,24 (log2 TCE sizes), repeatable
  --trace FILE         every call into the model, strace-style, with the
                       reason behind each errno
  --report             at exit, on stderr: DMA faults and sanitizer
                       findings, what was left pinned or open, taint, dmesg

The shim is built with the machine's C compiler (cc, or $CC) on first use and
cached in ~/.cache/iommufd-sim (or $XDG_CACHE_HOME, $IOMMUFD_SIM_CACHE).
Example: iommufd-sim exec --iommu none --param vfio.enable_unsafe_noiommu_mode=1 -- ./my-dpdk-app
More: docs/exec.md`,
  serve: `usage: iommufd-sim serve --socket PATH [machine options as for exec] [--trace FILE] [--report]

Boot one machine and serve it on a Unix socket until SIGINT or SIGTERM, so
several programs share it (a VMM and a helper). The socket's directory must
be private (mode 0700); the socket is made 0600. The first line on stdout is
the environment a program needs:
  IOMMUFD_SIM_SOCKET=PATH LD_PRELOAD=/path/to/shim.so
Then run each program with it, e.g.
  IOMMUFD_SIM_SOCKET=/run/me/sim.sock LD_PRELOAD=... ./vmm
Each program (and each child it forks) is a process of the machine; objects
of one are not reachable from another except through the fds it inherited.
More: docs/exec.md`,
  qemu: `usage: iommufd-sim qemu [--qemu 7.2|10|PATH] [--backend container|iommufd] [--mmap]
                        [--script FILE] [--host BDF] [machine options as for exec]
                        [--trace FILE] [--report] [-- QEMU ARGS...]

Assign the model's memcpy device to a real, unmodified QEMU (vfio-pci) and
drive it with a qtest script over stdio: no guest OS, the script is the
guest. QEMU runs under the exec bridge (TCG, q35, -S). The default script,
examples/qemu/memcpy.qtest, places the BARs with PCI config cycles, copies
bytes in guest RAM by DMA, checks the copy and the MSI-X message QEMU
writes to guest RAM, resets the machine and copies again, and checks that a
DMA outside guest RAM faults (STATUS 3) with nothing written.

  --qemu 7.2       the system's qemu-system-x86_64 (Debian bookworm), legacy
                   VFIO group + container (default)
  --qemu 10        QEMU 10 unpacked by scripts/qemu/install.sh in the cache,
                   iommufd backend (-object iommufd)
  --qemu PATH      another QEMU binary (with --backend; default container)
  --mmap           let QEMU mmap the BARs (default: x-no-mmap=on, BAR access
                   is pread/pwrite on the device fd)
  --script FILE    another qtest script (format: docs/qemu.md)
  --host BDF       the model's PCI function to assign (default 0000:00:04.0)
  --trace FILE     every call QEMU makes into the model, strace-style

Exit 0 when every check passed, QEMU exited with 0 and the model holds
nothing after it (QEMU never closes its VFIO fds: exit must release them).
More: docs/qemu.md`,
  web: `usage: iommufd-sim web [scenario.yaml] [--port N] [--export DIR]

Serve a browser view of the run on 127.0.0.1 and print its URL
(http://127.0.0.1:PORT/) as the first line of stdout; Ctrl+C stops it.
Without a file it opens examples/demo-noiommu.yaml. --port 0 picks a free
port (default 8080). --export DIR writes the same view as a static site
(index.html, app.js, app.css) instead of serving it.

The page runs the model itself: step through the run (arrow keys, Home/End,
the slider), see each step's calls with their errno and rule, each IOAS as an
address line, each HWPT's page table, pinned frames, VMAs and the DMA log,
and edit and rerun the scenario. Nothing is fetched from the network.`,
};
