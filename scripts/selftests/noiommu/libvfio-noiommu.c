/*
 * Written for iommufd-sim (not kernel code): the two library helpers the
 * noiommu series' selftest calls (see libvfio-noiommu.h and README.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "libvfio-noiommu.h"

int __iommu_noiommu_get_pa(struct iommu *iommu, iova_t iova, u64 max_length,
			   u64 *phys, u64 *length)
{
	struct iommu_ioas_noiommu_get_pa arg = {
		.size = sizeof(arg),
		.ioas_id = iommu->ioas_id,
		.iova = iova,
		.length = max_length,
	};

	if (ioctl(iommu->iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &arg))
		return -errno;
	if (phys)
		*phys = arg.out_phys;
	if (length)
		*length = arg.length;
	return 0;
}

bool vfio_pci_noiommu_mode_enabled(void)
{
	char c = 0;
	int fd = open("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", O_RDONLY);

	if (fd < 0)
		return false;
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	return c == 'Y' || c == 'y' || c == '1';
}
