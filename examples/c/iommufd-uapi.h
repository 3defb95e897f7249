/*
 * The few iommufd and VFIO cdev UAPI definitions the examples use, for
 * systems whose <linux/iommufd.h> is missing or older than the noiommu
 * series (Debian 12 ships 6.1 headers). Values as the kernel defines them.
 */
#ifndef IOMMUFD_SIM_EXAMPLE_UAPI_H
#define IOMMUFD_SIM_EXAMPLE_UAPI_H
#include <stdint.h>
#include <sys/ioctl.h>

#define EX_IOMMUFD_TYPE ';'
#define EX_IOMMU_IOAS_ALLOC _IO(EX_IOMMUFD_TYPE, 0x81)
#define EX_IOMMU_IOAS_MAP _IO(EX_IOMMUFD_TYPE, 0x85)
#define EX_IOMMU_IOAS_UNMAP _IO(EX_IOMMUFD_TYPE, 0x86)
#define EX_IOMMU_IOAS_NOIOMMU_GET_PA _IO(EX_IOMMUFD_TYPE, 0x95)
#define EX_IOMMU_TEST_CMD _IO(EX_IOMMUFD_TYPE, 0xa0)

#define EX_IOMMU_IOAS_MAP_FIXED_IOVA (1u << 0)
#define EX_IOMMU_IOAS_MAP_WRITEABLE (1u << 1)
#define EX_IOMMU_IOAS_MAP_READABLE (1u << 2)

struct ex_iommu_ioas_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t out_ioas_id;
};

struct ex_iommu_ioas_map {
	uint32_t size;
	uint32_t flags;
	uint32_t ioas_id;
	uint32_t __reserved;
	uint64_t user_va;
	uint64_t length;
	uint64_t iova;
};

struct ex_iommu_ioas_unmap {
	uint32_t size;
	uint32_t ioas_id;
	uint64_t iova;
	uint64_t length;
};

/* the noiommu series' GET_PA: the physical address behind an IOVA, and how far it runs contiguously */
struct ex_iommu_ioas_noiommu_get_pa {
	uint32_t size;
	uint32_t flags;
	uint32_t ioas_id;
	uint32_t __reserved;
	uint64_t iova;
	uint64_t length;
	uint64_t out_phys;
};

#define EX_VFIO_TYPE ';'
#define EX_VFIO_BASE 100
#define EX_VFIO_DEVICE_GET_INFO _IO(EX_VFIO_TYPE, EX_VFIO_BASE + 7)
#define EX_VFIO_DEVICE_GET_REGION_INFO _IO(EX_VFIO_TYPE, EX_VFIO_BASE + 8)
#define EX_VFIO_DEVICE_BIND_IOMMUFD _IO(EX_VFIO_TYPE, EX_VFIO_BASE + 18)
#define EX_VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(EX_VFIO_TYPE, EX_VFIO_BASE + 19)

#define EX_VFIO_PCI_BAR0_REGION_INDEX 0
#define EX_VFIO_PCI_CONFIG_REGION_INDEX 7

struct ex_vfio_device_bind_iommufd {
	uint32_t argsz;
	uint32_t flags;
	int32_t iommufd;
	uint32_t out_devid;
};

struct ex_vfio_device_attach_iommufd_pt {
	uint32_t argsz;
	uint32_t flags;
	uint32_t pt_id;
};

struct ex_vfio_region_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t cap_offset;
	uint64_t size;
	uint64_t offset;
};

/* the model's memcpy DMA device (docs: DESIGN.md "The memcpy device") */
#define MCPY_ID 0x00
#define MCPY_SRC 0x08
#define MCPY_DST 0x10
#define MCPY_LEN 0x18
#define MCPY_DOORBELL 0x20
#define MCPY_STATUS 0x24
#define MCPY_FAULT_ADDR 0x28
#define MCPY_STATUS_DONE 2
#define MCPY_STATUS_ERROR 3
#endif
