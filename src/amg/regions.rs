//! `remove_small_regions`: OpenCV `connectedComponentsWithStats(mask, 8)` semantics (label
//! 0 is the zero pixels; components of set pixels with 8-connectivity).

/// Labels the set pixels of a row-major mask; components are numbered 1.. in raster order
/// of their first pixel. Returns (labels, sizes) with `sizes[k]` the size of label k + 1.
pub fn components8(mask: &[bool], h: usize, w: usize) -> (Vec<u32>, Vec<u64>) {
    let mut parent: Vec<u32> = Vec::new();
    fn find(p: &mut [u32], mut x: u32) -> u32 {
        while p[x as usize] != x {
            p[x as usize] = p[p[x as usize] as usize];
            x = p[x as usize];
        }
        x
    }
    let mut prov = vec![u32::MAX; h * w];
    for y in 0..h {
        for x in 0..w {
            if !mask[y * w + x] {
                continue;
            }
            let mut lab = u32::MAX;
            let mut neigh = [u32::MAX; 4];
            if y > 0 {
                if x > 0 {
                    neigh[0] = prov[(y - 1) * w + x - 1];
                }
                neigh[1] = prov[(y - 1) * w + x];
                if x + 1 < w {
                    neigh[2] = prov[(y - 1) * w + x + 1];
                }
            }
            if x > 0 {
                neigh[3] = prov[y * w + x - 1];
            }
            for &n in &neigh {
                if n == u32::MAX {
                    continue;
                }
                if lab == u32::MAX {
                    lab = find(&mut parent, n);
                } else {
                    let (a, b) = (find(&mut parent, lab), find(&mut parent, n));
                    // The older provisional label (smaller) stays the root, so a root is
                    // always its component's first pixel in raster order.
                    let (lo, hi) = (a.min(b), a.max(b));
                    parent[hi as usize] = lo;
                    lab = lo;
                }
            }
            if lab == u32::MAX {
                lab = parent.len() as u32;
                parent.push(lab);
            }
            prov[y * w + x] = lab;
        }
    }
    let mut final_of = vec![0u32; parent.len()];
    let mut sizes = Vec::new();
    for i in 0..parent.len() as u32 {
        let r = find(&mut parent, i);
        if r == i {
            sizes.push(0);
            final_of[i as usize] = sizes.len() as u32;
        }
    }
    let mut labels = vec![0u32; h * w];
    for (l, &p) in labels.iter_mut().zip(&prov) {
        if p != u32::MAX {
            let f = final_of[find(&mut parent, p) as usize];
            *l = f;
            sizes[f as usize - 1] += 1;
        }
    }
    (labels, sizes)
}

/// The official `remove_small_regions(mask, area_thresh, mode)`: "holes" fills background
/// components smaller than `area_thresh`; "islands" keeps only foreground components of at
/// least that size (the largest one if none is). Returns whether anything was small.
pub fn remove_small_regions(
    mask: &[bool],
    h: usize,
    w: usize,
    area_thresh: f64,
    holes: bool,
) -> (Vec<bool>, bool) {
    let working: Vec<bool> = mask.iter().map(|&m| m ^ holes).collect();
    let (labels, sizes) = components8(&working, h, w);
    let small: Vec<bool> = sizes.iter().map(|&s| (s as f64) < area_thresh).collect();
    if !small.iter().any(|&s| s) {
        return (mask.to_vec(), false);
    }
    // keep[l]: label l is in the official `fill_labels`.
    let mut keep = vec![false; sizes.len() + 1];
    if holes {
        keep[0] = true;
        for (k, &s) in small.iter().enumerate() {
            keep[k + 1] = s;
        }
    } else {
        for (k, &s) in small.iter().enumerate() {
            keep[k + 1] = !s;
        }
        if !keep.iter().any(|&k| k) {
            // np.argmax: the first of the largest.
            let mut best = 0;
            for (k, &s) in sizes.iter().enumerate() {
                if s > sizes[best] {
                    best = k;
                }
            }
            keep[best + 1] = true;
        }
    }
    (labels.iter().map(|&l| keep[l as usize]).collect(), true)
}
