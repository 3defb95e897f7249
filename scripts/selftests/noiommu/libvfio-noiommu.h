/*
 * Written for iommufd-sim (not kernel code): what the noiommu series'
 * selftest needs from its library and uapi that 7.2's tree does not have.
 * Force-included (-include) into vfio_iommufd_noiommu_test.c, which stays
 * unmodified. README.md beside this file says why these are ours.
 */
#ifndef IOMMUFD_SIM_LIBVFIO_NOIOMMU_H
#define IOMMUFD_SIM_LIBVFIO_NOIOMMU_H

#include <stdbool.h>
#include <linux/iommufd.h>

#include <libvfio.h>

#ifndef IOMMU_IOAS_NOIOMMU_GET_PA
/* The series' uapi: command 0x95, a 40-byte argument; `length` is in/out. */
struct iommu_ioas_noiommu_get_pa {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__u32 __reserved;
	__aligned_u64 iova;
	__aligned_u64 length;
	__aligned_u64 out_phys;
};
#define IOMMU_IOAS_NOIOMMU_GET_PA _IO(IOMMUFD_TYPE, 0x95)
#endif

/*
 * IOMMU_IOAS_NOIOMMU_GET_PA on the library's IOAS. max_length goes into
 * `length` as given (0 stays 0); phys and length may be NULL. Returns 0 or
 * -errno.
 */
int __iommu_noiommu_get_pa(struct iommu *iommu, iova_t iova, u64 max_length,
			   u64 *phys, u64 *length);

/* Whether the vfio module's enable_unsafe_noiommu_mode parameter is on. */
bool vfio_pci_noiommu_mode_enabled(void);

#endif
