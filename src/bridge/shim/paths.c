/*
 * Which paths are the model's: /dev/iommu, /dev/vfio, the PCI and IOMMU
 * parts of /sys, module parameters, hugepage attributes, debugfs, fail-nth.
 */
#include "shim.h"

static int has_prefix(const char *p, const char *pre)
{
	size_t n = strlen(pre);
	return strncmp(p, pre, n) == 0 && (p[n] == 0 || p[n] == '/');
}

/* /proc/self/task/TID/fail-nth, /proc/thread-self/fail-nth, /proc/PID/task/TID/fail-nth */
static int is_fail_nth(const char *p)
{
	size_t n = strlen(p);
	if (n < 9 || strcmp(p + n - 9, "/fail-nth") != 0)
		return 0;
	return strncmp(p, "/proc/", 6) == 0;
}

/* /proc/self/pagemap, /proc/PID/pagemap of this process: the model's frame numbers */
static int is_own_pagemap(const char *p)
{
	if (strcmp(p, "/proc/self/pagemap") == 0)
		return 1;
	char own[40];
	snprintf(own, sizeof(own), "/proc/%d/pagemap", (int)getpid());
	return strcmp(p, own) == 0;
}

/* /proc/self/status, /proc/PID/status: VmLck and VmPin with the model's charges (the server passes others through) */
static int is_proc_status(const char *p)
{
	if (strcmp(p, "/proc/self/status") == 0)
		return 1;
	if (strncmp(p, "/proc/", 6) != 0)
		return 0;
	const char *q = p + 6;
	if (*q < '0' || *q > '9')
		return 0;
	while (*q >= '0' && *q <= '9')
		q++;
	return strcmp(q, "/status") == 0;
}

int is_model_path(const char *p)
{
	if (!p || p[0] != '/')
		return 0;
	switch (p[1]) {
	case 'd':
		return has_prefix(p, "/dev/iommu") || has_prefix(p, "/dev/vfio");
	case 's':
		if (strncmp(p, "/sys/", 5) != 0)
			return 0;
		return has_prefix(p, "/sys/bus/pci") || strncmp(p, "/sys/devices/pci", 16) == 0 ||
		       has_prefix(p, "/sys/kernel/iommu_groups") || has_prefix(p, "/sys/class/vfio-dev") ||
		       has_prefix(p, "/sys/class/iommu") || strncmp(p, "/sys/module/vfio", 16) == 0 ||
		       has_prefix(p, "/sys/module/iommufd") || has_prefix(p, "/sys/kernel/mm/hugepages") ||
		       has_prefix(p, "/sys/kernel/mm/transparent_hugepage") ||
		       has_prefix(p, "/sys/kernel/debug");
	case 'p':
		return is_fail_nth(p) || is_own_pagemap(p) || is_proc_status(p);
	}
	return 0;
}
