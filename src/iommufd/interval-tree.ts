/**
 * An interval tree over inclusive [start, last] bigint ranges (the kernel's
 * interval_tree / struct interval_tree_node used by io_pagetable for areas,
 * reserved ranges and allowed ranges). An AVL tree ordered by start (ties
 * by insertion order, so overlapping and duplicate intervals are allowed),
 * augmented with the largest `last` of each subtree so intersection queries
 * cost O(log n + hits). An IOAS with 100 000 areas maps and unmaps one more
 * in O(log n), which is why this is not an array.
 */
export class ItNode<T> {
  left: ItNode<T> | null = null;
  right: ItNode<T> | null = null;
  parent: ItNode<T> | null = null;
  height = 1;
  subtreeLast: bigint;
  constructor(
    readonly start: bigint,
    readonly last: bigint,
    readonly seq: number,
    public value: T,
  ) {
    this.subtreeLast = last;
  }
}

function h<T>(n: ItNode<T> | null): number {
  return n === null ? 0 : n.height;
}

function update<T>(n: ItNode<T>): void {
  const lh = h(n.left);
  const rh = h(n.right);
  n.height = Math.max(lh, rh) + 1;
  let m = n.last;
  if (n.left !== null && n.left.subtreeLast > m) m = n.left.subtreeLast;
  if (n.right !== null && n.right.subtreeLast > m) m = n.right.subtreeLast;
  n.subtreeLast = m;
}

function before<T>(a: ItNode<T>, b: ItNode<T>): boolean {
  return a.start < b.start || (a.start === b.start && a.seq < b.seq);
}

export class IntervalTree<T> {
  private root: ItNode<T> | null = null;
  private seq = 0;
  private n = 0;

  get size(): number {
    return this.n;
  }

  insert(start: bigint, last: bigint, value: T): ItNode<T> {
    if (last < start) throw new RangeError(`interval [${start}, ${last}] is empty`);
    const node = new ItNode(start, last, this.seq++, value);
    this.n++;
    if (this.root === null) {
      this.root = node;
      return node;
    }
    let cur = this.root;
    for (;;) {
      if (before(node, cur)) {
        if (cur.left === null) {
          cur.left = node;
          break;
        }
        cur = cur.left;
      } else {
        if (cur.right === null) {
          cur.right = node;
          break;
        }
        cur = cur.right;
      }
    }
    node.parent = cur;
    this.rebalanceFrom(cur);
    return node;
  }

  remove(node: ItNode<T>): void {
    this.n--;
    let fix: ItNode<T> | null;
    if (node.left !== null && node.right !== null) {
      // Swap in the in-order successor's position.
      let s = node.right;
      while (s.left !== null) s = s.left;
      const sParent = s.parent!;
      // detach s
      if (sParent !== node) {
        sParent.left = s.right;
        if (s.right !== null) s.right.parent = sParent;
        s.right = node.right;
        node.right.parent = s;
        fix = sParent;
      } else {
        fix = s;
      }
      s.left = node.left;
      node.left.parent = s;
      this.replaceChild(node.parent, node, s);
      s.parent = node.parent;
    } else {
      const child = node.left ?? node.right;
      this.replaceChild(node.parent, node, child);
      if (child !== null) child.parent = node.parent;
      fix = node.parent;
    }
    node.left = node.right = node.parent = null;
    if (fix !== null) this.rebalanceFrom(fix);
  }

  /** Every node in start order. */
  *all(): Generator<ItNode<T>> {
    yield* this.intersecting(-1n, 1n << 65n);
  }

  first(): ItNode<T> | null {
    let c = this.root;
    if (c === null) return null;
    while (c.left !== null) c = c.left;
    return c;
  }

  /** Nodes intersecting [start, last], in start order. */
  *intersecting(start: bigint, last: bigint): Generator<ItNode<T>> {
    // Iterative in-order walk pruned by subtreeLast (left side) and start (right side).
    const stack: ItNode<T>[] = [];
    let cur = this.root;
    while (cur !== null || stack.length > 0) {
      while (cur !== null) {
        if (cur.subtreeLast < start) {
          cur = null;
          break;
        }
        stack.push(cur);
        cur = cur.left;
      }
      if (stack.length === 0) break;
      const n = stack.pop()!;
      if (n.start > last) return;
      if (n.last >= start) yield n;
      cur = n.right;
    }
  }

  /** The first node (by start) intersecting [start, last], or null. */
  firstIntersecting(start: bigint, last: bigint): ItNode<T> | null {
    for (const n of this.intersecting(start, last)) return n;
    return null;
  }

  /** Is any part of [start, last] covered? */
  intersects(start: bigint, last: bigint): boolean {
    return this.firstIntersecting(start, last) !== null;
  }

  private replaceChild(parent: ItNode<T> | null, old: ItNode<T>, nu: ItNode<T> | null): void {
    if (parent === null) this.root = nu;
    else if (parent.left === old) parent.left = nu;
    else parent.right = nu;
  }

  private rotateLeft(x: ItNode<T>): ItNode<T> {
    const y = x.right!;
    x.right = y.left;
    if (y.left !== null) y.left.parent = x;
    y.parent = x.parent;
    this.replaceChild(x.parent, x, y);
    y.left = x;
    x.parent = y;
    update(x);
    update(y);
    return y;
  }

  private rotateRight(x: ItNode<T>): ItNode<T> {
    const y = x.left!;
    x.left = y.right;
    if (y.right !== null) y.right.parent = x;
    y.parent = x.parent;
    this.replaceChild(x.parent, x, y);
    y.right = x;
    x.parent = y;
    update(x);
    update(y);
    return y;
  }

  private rebalanceFrom(n: ItNode<T> | null): void {
    while (n !== null) {
      update(n);
      const bal = h(n.left) - h(n.right);
      if (bal > 1) {
        if (h(n.left!.left) < h(n.left!.right)) this.rotateLeft(n.left!);
        n = this.rotateRight(n);
      } else if (bal < -1) {
        if (h(n.right!.right) < h(n.right!.left)) this.rotateRight(n.right!);
        n = this.rotateLeft(n);
      }
      n = n.parent;
    }
  }
}

/**
 * The holes of [start, last] not covered by any interval of the given trees,
 * in ascending order (interval_tree_double_span_iter's "hole" spans).
 */
export function* holes(
  trees: IntervalTree<unknown>[],
  start: bigint,
  last: bigint,
): Generator<[bigint, bigint]> {
  if (start > last) return;
  const its = trees.map((t) => t.intersecting(start, last));
  const heads: (ItNode<unknown> | null)[] = its.map((it) => {
    const r = it.next();
    return r.done ? null : r.value;
  });
  let cursor = start;
  for (;;) {
    let bi = -1;
    for (let i = 0; i < heads.length; i++) {
      const hd = heads[i];
      if (hd !== null && (bi < 0 || hd.start < heads[bi]!.start)) bi = i;
    }
    if (bi < 0) break;
    const nd = heads[bi]!;
    const r = its[bi].next();
    heads[bi] = r.done ? null : r.value;
    if (nd.start > cursor) yield [cursor, nd.start - 1n];
    if (nd.last >= last) return;
    if (nd.last + 1n > cursor) cursor = nd.last + 1n;
  }
  if (cursor <= last) yield [cursor, last];
}
