import { EINVAL, fail } from "../uapi/errno.js";
import { offsetOfEnd } from "../uapi/struct.js";
import {
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_DATA_TYPE_MASK,
  vfio_irq_set,
} from "../uapi/vfio.js";

/** struct vfio_irq_set's header (minsz = offsetofend(count) = 20). */
export interface IrqSetHdr {
  argsz: number;
  flags: number;
  index: number;
  start: number;
  count: number;
}

export const VFIO_IRQ_SET_MINSZ = offsetOfEnd(vfio_irq_set, "count");
const U32_MAX = 0xffffffff;

/**
 * vfio_set_irqs_validate_and_prepare() (drivers/vfio/vfio_main.c): every
 * failure is EINVAL. `numIrqs` is the vector count of hdr.index (0 when
 * the device has none, which rejects every request on that index).
 * Returns the byte size of the data that follows the header.
 */
export function vfioSetIrqsValidate(hdr: IrqSetHdr, numIrqs: number, maxIrqType: number): number {
  if (hdr.argsz < VFIO_IRQ_SET_MINSZ) fail(EINVAL, `SET_IRQS: argsz ${hdr.argsz} is below minsz 20`);
  if (hdr.index >= maxIrqType)
    fail(EINVAL, `SET_IRQS: index ${hdr.index} is not an IRQ type (${maxIrqType} exist)`);
  if (hdr.count >= U32_MAX - hdr.start) fail(EINVAL, "SET_IRQS: start + count overflows");
  if ((hdr.flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)) !== 0) {
    fail(EINVAL, `SET_IRQS: unknown flag bits 0x${(hdr.flags >>> 0).toString(16)}`);
  }
  if (hdr.start >= numIrqs || hdr.start + hdr.count > numIrqs) {
    fail(
      EINVAL,
      `SET_IRQS: vectors [${hdr.start}, ${hdr.start + hdr.count}) outside the ${numIrqs} of index ${hdr.index}`,
    );
  }
  let size: number;
  switch (hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
    case VFIO_IRQ_SET_DATA_NONE:
      size = 0;
      break;
    case VFIO_IRQ_SET_DATA_BOOL:
      size = 1;
      break;
    case VFIO_IRQ_SET_DATA_EVENTFD:
      size = 4;
      break;
    default:
      return fail(
        EINVAL,
        "SET_IRQS: the data type must be exactly one of DATA_NONE, DATA_BOOL, DATA_EVENTFD",
      );
  }
  if (size !== 0 && hdr.argsz - VFIO_IRQ_SET_MINSZ < hdr.count * size) {
    fail(
      EINVAL,
      `SET_IRQS: argsz ${hdr.argsz} leaves no room for ${hdr.count} data elements of ${size} bytes`,
    );
  }
  return size * hdr.count;
}
