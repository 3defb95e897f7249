/*
 * A small DPDK PCI driver for iommufd-sim's memcpy DMA device (1de0:0001),
 * built against Debian's libdpdk-dev 22.11 and loaded with `-d`:
 *
 *   dpdk-test -d ./librte_memcpy_pmd.so -a 0000:00:04.0 ...
 *
 * It registers an rte_pci_driver with the device's ID table and
 * RTE_PCI_DRV_NEED_MAPPING, so the EAL binds the device through VFIO
 * (container, group, SET_IOMMU, DMA map of all its memory, BAR mmap, bus
 * mastering, reset, the REQ irq) before probe. Probe checks the device's
 * identity register, then copies a buffer of DPDK memory (an IOVA-contiguous
 * memzone) with the device and checks the copy, and checks that a DMA to an
 * IOVA the EAL never mapped fails (STATUS 3) with nothing written.
 *
 * Registers: through the BAR0 mapping the EAL made (MMIO).
 *
 * BAR0 (iommufd-sim src/hw/memcpy-dev.ts): ID 0x00 ("MCPY"), SRC 0x08,
 * DST 0x10, LEN 0x18 (u64 each), DOORBELL 0x20 (bit 0 starts the copy),
 * STATUS 0x24 (0 idle, 2 done, 3 error), FAULT_ADDR 0x28, COUNT 0x30.
 */
#define _GNU_SOURCE
/* rte_intr_dev_fd_get is DPDK's internal (driver) API */
#define ALLOW_INTERNAL_API
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>


#include <rte_common.h>
#include <rte_eal.h>
#include <rte_io.h>
#include <rte_log.h>
#include <rte_memory.h>
#include <rte_memzone.h>
#include <rte_version.h>

#include "dpdk-pci-sdk.h"

#define MEMCPY_VENDOR_ID 0x1de0
#define MEMCPY_DEVICE_ID 0x0001

#define REG_ID 0x00
#define REG_SRC 0x08
#define REG_DST 0x10
#define REG_LEN 0x18
#define REG_DOORBELL 0x20
#define REG_STATUS 0x24
#define REG_FAULT_ADDR 0x28
#define REG_COUNT 0x30

#define ID_VALUE 0x5950434du
#define STATUS_DONE 2
#define STATUS_ERROR 3

#define COPY_LEN (64 * 1024)

#define LOG(level, fmt, ...) rte_log(RTE_LOG_##level, RTE_LOGTYPE_USER1, "memcpy_pmd: " fmt "\n", ##__VA_ARGS__)

struct memcpy_dev {
	struct rte_pci_device *pci;
	volatile uint8_t *bar0; /* the EAL's mapping of BAR0 */
};

static uint64_t reg_read(struct memcpy_dev *d, uint32_t off, int size)
{
	if (size == 8)
		return rte_read64(d->bar0 + off);
	return rte_read32(d->bar0 + off);
}

static void reg_write(struct memcpy_dev *d, uint32_t off, uint64_t v, int size)
{
	if (size == 8)
		rte_write64(v, d->bar0 + off);
	else
		rte_write32((uint32_t)v, d->bar0 + off);
}

/* One job: the device runs it before the doorbell write returns; poll anyway, as hardware needs. */
static uint32_t run_copy(struct memcpy_dev *d, rte_iova_t dst, rte_iova_t src, uint64_t len)
{
	reg_write(d, REG_SRC, src, 8);
	reg_write(d, REG_DST, dst, 8);
	reg_write(d, REG_LEN, len, 8);
	reg_write(d, REG_DOORBELL, 1, 4);
	uint32_t st = 0;
	for (int i = 0; i < 1000000; i++) {
		st = (uint32_t)reg_read(d, REG_STATUS, 4);
		if (st == STATUS_DONE || st == STATUS_ERROR)
			break;
	}
	return st;
}

/* A copy between two buffers of DPDK memory, checked byte for byte. */
static int self_test(struct memcpy_dev *d)
{
	const struct rte_memzone *mz =
		rte_memzone_reserve_aligned("memcpy_pmd_test", 2 * COPY_LEN, d->pci->device.numa_node,
					    RTE_MEMZONE_IOVA_CONTIG, 4096);
	if (!mz) {
		LOG(ERR, "cannot reserve the test memzone");
		return -ENOMEM;
	}
	uint8_t *src = mz->addr, *dst = src + COPY_LEN;
	rte_iova_t src_iova = mz->iova, dst_iova = mz->iova + COPY_LEN;
	for (int i = 0; i < COPY_LEN; i++)
		src[i] = (uint8_t)(i * 7 + (i >> 8));
	memset(dst, 0, COPY_LEN);
	uint32_t count = (uint32_t)reg_read(d, REG_COUNT, 4);
	uint32_t st = run_copy(d, dst_iova, src_iova, COPY_LEN);
	int rc = 0;
	if (st != STATUS_DONE) {
		LOG(ERR, "copy failed: status %u, fault address 0x%" PRIx64, st,
		    reg_read(d, REG_FAULT_ADDR, 8));
		rc = -EIO;
	} else if (memcmp(src, dst, COPY_LEN) != 0) {
		LOG(ERR, "copy done but the destination differs");
		rc = -EIO;
	} else if ((uint32_t)reg_read(d, REG_COUNT, 4) != count + 1) {
		LOG(ERR, "COUNT did not advance");
		rc = -EIO;
	} else {
		LOG(INFO, "DMA copy of %d bytes ok: iova 0x%" PRIx64 " -> 0x%" PRIx64 " (va %p -> %p), iova mode %s",
		    COPY_LEN, (uint64_t)src_iova, (uint64_t)dst_iova, (void *)src, (void *)dst,
		    rte_eal_iova_mode() == RTE_IOVA_VA ? "VA" : "PA");
	}
	if (rc == 0) {
		/* An IOVA far from anything the EAL mapped: the IOMMU (or, in
		 * noiommu mode, the end of physical memory) must stop it, and
		 * the destination must stay untouched. */
		const rte_iova_t bad = (rte_iova_t)1 << 46;
		memset(dst, 0xa5, 64);
		st = run_copy(d, bad, src_iova, 64);
		uint64_t fa = reg_read(d, REG_FAULT_ADDR, 8);
		if (st != STATUS_ERROR || dst[0] != 0xa5) {
			LOG(ERR, "a DMA to unmapped iova 0x%" PRIx64 " was not refused (status %u)", (uint64_t)bad, st);
			rc = -EIO;
		} else {
			LOG(INFO, "DMA to unmapped iova 0x%" PRIx64 " refused: status %u, fault address 0x%" PRIx64,
			    (uint64_t)bad, st, fa);
		}
	}
	rte_memzone_free(mz);
	return rc;
}

static struct memcpy_dev devs[8];
static int ndevs;

static int memcpy_probe(struct rte_pci_driver *drv, struct rte_pci_device *pci)
{
	(void)drv;
	char name[PCI_PRI_STR_SIZE];
	rte_pci_device_name(&pci->addr, name, sizeof(name));
	/* the layouts of dpdk-pci-sdk.h, checked against what the EAL filled in */
	if (!pci->device.name || strcmp(name, pci->device.name) != 0 || strcmp(name, pci->name) != 0 ||
	    pci->id.vendor_id != MEMCPY_VENDOR_ID || pci->id.device_id != MEMCPY_DEVICE_ID) {
		LOG(ERR, "rte_pci_device does not have DPDK 22.11's layout");
		return -EINVAL;
	}
	if (ndevs == (int)RTE_DIM(devs))
		return -ENOSPC;
	struct memcpy_dev *d = &devs[ndevs];
	d->pci = pci;
	d->bar0 = pci->mem_resource[0].addr;
	if (!d->bar0 || pci->mem_resource[0].len < 0x40) {
		LOG(ERR, "%s: the EAL did not map BAR0", name);
		return -ENODEV;
	}
	LOG(INFO, "%s: BAR0 %" PRIu64 " bytes mapped at %p, VFIO device fd %d, registers by MMIO", name,
	    pci->mem_resource[0].len, pci->mem_resource[0].addr, rte_intr_dev_fd_get(pci->intr_handle));
	uint32_t id = (uint32_t)reg_read(d, REG_ID, 4);
	if (id != ID_VALUE) {
		LOG(ERR, "%s: ID register reads 0x%x, not 0x%x", name, id, ID_VALUE);
		return -ENODEV;
	}
	int rc = self_test(d);
	if (rc < 0)
		return rc;
	ndevs++;
	return 0;
}

static int memcpy_remove(struct rte_pci_device *pci)
{
	for (int i = 0; i < ndevs; i++)
		if (devs[i].pci == pci)
			devs[i] = devs[--ndevs];
	return 0;
}

static const struct rte_pci_id memcpy_ids[] = {
	{.class_id = RTE_CLASS_ANY_ID,
	 .vendor_id = MEMCPY_VENDOR_ID,
	 .device_id = MEMCPY_DEVICE_ID,
	 .subsystem_vendor_id = RTE_PCI_ANY_ID,
	 .subsystem_device_id = RTE_PCI_ANY_ID},
	{.vendor_id = 0},
};

static struct rte_pci_driver memcpy_driver = {
	.driver = {.name = "memcpy_pmd"},
	.id_table = memcpy_ids,
	.drv_flags = RTE_PCI_DRV_NEED_MAPPING,
	.probe = memcpy_probe,
	.remove = memcpy_remove,
};

RTE_INIT(memcpy_pmd_init)
{
	rte_pci_register(&memcpy_driver);
}

/* Copies by the first probed device, for programs that link the driver; 0 or -errno. */
int memcpy_pmd_copy(rte_iova_t dst, rte_iova_t src, uint64_t len);
int memcpy_pmd_copy(rte_iova_t dst, rte_iova_t src, uint64_t len)
{
	if (ndevs == 0)
		return -ENODEV;
	return run_copy(&devs[0], dst, src, len) == STATUS_DONE ? 0 : -EIO;
}
