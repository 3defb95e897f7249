/*
 * The parts of DPDK 22.11's driver SDK an out-of-tree PCI driver needs.
 *
 * DPDK 22.11 made struct rte_pci_driver, struct rte_pci_device and
 * struct rte_device private to drivers (bus_pci_driver.h, dev_driver.h), and
 * Debian's libdpdk-dev does not install those headers (DPDK is built without
 * enable_driver_sdk). The layouts below are the 22.11 ABI (DPDK_23): checked
 * against librte_bus_pci.so.23 (rte_pci_dump reads addr at 0x50, id at 0x58,
 * mem_resource at 0x68), and the driver checks them again at probe time
 * (the probed device's name must be its PCI address).
 */
#ifndef DPDK_PCI_SDK_H
#define DPDK_PCI_SDK_H

#include <stdint.h>
#include <sys/queue.h>

#include <rte_bus_pci.h>
#include <rte_dev.h>
#include <rte_interrupts.h>
#include <rte_pci.h>

#if RTE_VERSION < RTE_VERSION_NUM(22, 11, 0, 0) || RTE_VERSION >= RTE_VERSION_NUM(23, 0, 0, 0)
#error "these layouts are DPDK 22.11's (Debian bookworm)"
#endif

struct rte_driver {
	TAILQ_ENTRY(rte_driver) next;
	const char *name;
	const char *alias;
};

struct rte_device {
	TAILQ_ENTRY(rte_device) next;
	const char *name;
	const char *bus_info;
	const struct rte_driver *driver;
	const struct rte_bus *bus;
	int numa_node;
	struct rte_devargs *devargs;
};

enum rte_pci_kernel_driver {
	RTE_PCI_KDRV_UNKNOWN = 0,
	RTE_PCI_KDRV_IGB_UIO,
	RTE_PCI_KDRV_VFIO,
	RTE_PCI_KDRV_UIO_GENERIC,
	RTE_PCI_KDRV_NIC_UIO,
	RTE_PCI_KDRV_NONE,
	RTE_PCI_KDRV_NET_UIO,
};

struct rte_pci_device {
	TAILQ_ENTRY(rte_pci_device) next;
	struct rte_device device;
	struct rte_pci_addr addr;
	struct rte_pci_id id;
	struct rte_mem_resource mem_resource[PCI_MAX_RESOURCE];
	struct rte_intr_handle *intr_handle;
	struct rte_pci_driver *driver;
	uint16_t max_vfs;
	enum rte_pci_kernel_driver kdrv;
	char name[PCI_PRI_STR_SIZE + 1];
	struct rte_intr_handle *vfio_req_intr_handle;
};

typedef int(rte_pci_probe_t)(struct rte_pci_driver *, struct rte_pci_device *);
typedef int(rte_pci_remove_t)(struct rte_pci_device *);
typedef int(pci_dma_map_t)(struct rte_pci_device *, void *, uint64_t, size_t);
typedef int(pci_dma_unmap_t)(struct rte_pci_device *, void *, uint64_t, size_t);

struct rte_pci_driver {
	TAILQ_ENTRY(rte_pci_driver) next;
	struct rte_driver driver;
	rte_pci_probe_t *probe;
	rte_pci_remove_t *remove;
	pci_dma_map_t *dma_map;
	pci_dma_unmap_t *dma_unmap;
	const struct rte_pci_id *id_table;
	uint32_t drv_flags;
};

/* the EAL maps the device's BARs (VFIO) before probe */
#define RTE_PCI_DRV_NEED_MAPPING 0x0001

/* exported by librte_bus_pci with version INTERNAL */
void rte_pci_register(struct rte_pci_driver *driver);
void rte_pci_unregister(struct rte_pci_driver *driver);

#endif
