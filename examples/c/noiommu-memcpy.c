/*
 * A DPDK-style user-space driver on a machine with no IOMMU, through the
 * proposed noiommu mode for VFIO device cdevs:
 *   1. find the device's cdev in sysfs (vfio-dev/ under the PCI function)
 *   2. open it and /dev/iommu, bind the device to the iommufd, attach an IOAS
 *   3. map a buffer into the IOAS (this pins it) and ask the kernel for the
 *      physical address behind the IOVA (IOMMU_IOAS_NOIOMMU_GET_PA)
 *   4. drive the memcpy DMA device by physical address through BAR0's
 *      region (pwrite on the device fd), and check the copy in our memory.
 * Unmodified, it runs against iommufd-sim:
 *   iommufd-sim exec --iommu none --param vfio.enable_unsafe_noiommu_mode=1 \
 *       -- ./noiommu-memcpy 0000:00:04.0
 * (on a real kernel with the noiommu cdev series it needs root and such a device).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "iommufd-uapi.h"

#define VFIO_REGION_OFFSET(index) ((uint64_t)(index) << 40)

static void die(const char *what)
{
	fprintf(stderr, "noiommu-memcpy: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* The cdev name under /sys/bus/pci/devices/BDF/vfio-dev/ (vfioN, or noiommu-vfioN). */
static void find_cdev(const char *bdf, char *out, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", bdf);
	DIR *d = opendir(path);
	if (!d)
		die(path);
	struct dirent *e;
	out[0] = 0;
	while ((e = readdir(d)) != NULL)
		if (strstr(e->d_name, "vfio") != NULL)
			snprintf(out, len, "/dev/vfio/devices/%s", e->d_name);
	closedir(d);
	if (!out[0]) {
		errno = ENODEV;
		die("no vfio cdev for the device");
	}
}

static void reg_write(int dev, uint64_t bar0, uint32_t off, uint64_t v, size_t size)
{
	if (pwrite(dev, &v, size, (off_t)(bar0 + off)) != (ssize_t)size)
		die("BAR0 write");
}

static uint32_t reg_read32(int dev, uint64_t bar0, uint32_t off)
{
	uint32_t v = 0;
	if (pread(dev, &v, 4, (off_t)(bar0 + off)) != 4)
		die("BAR0 read");
	return v;
}

int main(int argc, char **argv)
{
	const char *bdf = argc > 1 ? argv[1] : "0000:00:04.0";
	char cdev[300];
	find_cdev(bdf, cdev, sizeof(cdev));
	printf("device %s: %s\n", bdf, cdev);

	int iommufd = open("/dev/iommu", O_RDWR);
	if (iommufd < 0)
		die("/dev/iommu");
	int dev = open(cdev, O_RDWR);
	if (dev < 0)
		die(cdev);

	struct ex_vfio_device_bind_iommufd bind = {.argsz = sizeof(bind), .iommufd = iommufd};
	if (ioctl(dev, EX_VFIO_DEVICE_BIND_IOMMUFD, &bind))
		die("VFIO_DEVICE_BIND_IOMMUFD");
	struct ex_iommu_ioas_alloc alloc = {.size = sizeof(alloc)};
	if (ioctl(iommufd, EX_IOMMU_IOAS_ALLOC, &alloc))
		die("IOMMU_IOAS_ALLOC");
	struct ex_vfio_device_attach_iommufd_pt attach = {.argsz = sizeof(attach), .pt_id = alloc.out_ioas_id};
	if (ioctl(dev, EX_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		die("VFIO_DEVICE_ATTACH_IOMMUFD_PT");

	/* two pages: the source and the destination of the copy */
	size_t len = 2 * 4096;
	uint8_t *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		die("mmap");
	struct ex_iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = EX_IOMMU_IOAS_MAP_FIXED_IOVA | EX_IOMMU_IOAS_MAP_READABLE | EX_IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = alloc.out_ioas_id,
		.user_va = (uintptr_t)buf,
		.length = len,
		.iova = 1 << 20,
	};
	if (ioctl(iommufd, EX_IOMMU_IOAS_MAP, &map))
		die("IOMMU_IOAS_MAP");

	/* the physical address of each page (the pages need not be contiguous) */
	uint64_t pa[2];
	for (int i = 0; i < 2; i++) {
		struct ex_iommu_ioas_noiommu_get_pa gp = {
			.size = sizeof(gp), .ioas_id = alloc.out_ioas_id, .iova = map.iova + i * 4096, .length = 4096};
		if (ioctl(iommufd, EX_IOMMU_IOAS_NOIOMMU_GET_PA, &gp))
			die("IOMMU_IOAS_NOIOMMU_GET_PA");
		pa[i] = gp.out_phys;
		printf("iova 0x%llx -> pa 0x%llx (%llu bytes contiguous)\n", (unsigned long long)gp.iova,
		       (unsigned long long)gp.out_phys, (unsigned long long)gp.length);
	}

	/* where BAR0 and the config space are in the device fd */
	struct ex_vfio_region_info bar = {.argsz = sizeof(bar), .index = EX_VFIO_PCI_BAR0_REGION_INDEX};
	if (ioctl(dev, EX_VFIO_DEVICE_GET_REGION_INFO, &bar))
		die("VFIO_DEVICE_GET_REGION_INFO");
	uint64_t cfg = VFIO_REGION_OFFSET(EX_VFIO_PCI_CONFIG_REGION_INDEX);
	uint16_t cmd = 0;
	if (pread(dev, &cmd, 2, (off_t)(cfg + 4)) != 2)
		die("config read");
	cmd |= 1 << 2; /* bus master */
	if (pwrite(dev, &cmd, 2, (off_t)(cfg + 4)) != 2)
		die("config write");
	printf("BAR0 at offset 0x%llx, ID 0x%08x\n", (unsigned long long)bar.offset, reg_read32(dev, bar.offset, MCPY_ID));

	/* the program stores the bytes; the device copies them by physical address */
	const char msg[] = "hello from user space, copied by the device";
	memcpy(buf, msg, sizeof(msg));
	memset(buf + 4096, 0, 4096);
	reg_write(dev, bar.offset, MCPY_SRC, pa[0], 8);
	reg_write(dev, bar.offset, MCPY_DST, pa[1], 8);
	reg_write(dev, bar.offset, MCPY_LEN, sizeof(msg), 8);
	reg_write(dev, bar.offset, MCPY_DOORBELL, 1, 4);
	uint32_t status = reg_read32(dev, bar.offset, MCPY_STATUS);
	printf("status %u\n", status);
	int ok = status == MCPY_STATUS_DONE && memcmp(buf + 4096, msg, sizeof(msg)) == 0;
	printf("copy %s: \"%s\"\n", ok ? "ok" : "WRONG", (char *)buf + 4096);

	struct ex_iommu_ioas_unmap unmap = {.size = sizeof(unmap), .ioas_id = alloc.out_ioas_id, .iova = map.iova, .length = len};
	if (ioctl(iommufd, EX_IOMMU_IOAS_UNMAP, &unmap))
		die("IOMMU_IOAS_UNMAP");
	close(dev);
	close(iommufd);
	return ok ? 0 : 1;
}
