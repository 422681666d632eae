// Measurements of what the page shows, for the browser tests and an operator's console.
// centreFill: the share of pixels in the centre of the view that the 3D content changes,
// found by rendering the same view with and without the city and the layers (the base
// imagery under the city varies, so "differs from the background" is measured against the
// background as drawn there, not one colour). contentBox: where in the whole view the content
// is, as the same difference: its centroid and the 5th..95th percentile box of the differing
// pixels, as fractions of the view (0.5, 0.5 is the middle). glyphs: whether the page's font draws Chinese
// characters as glyphs of their own, not as the missing-glyph box.

function nextFrames(viewer, n) {
  return new Promise((resolve) => {
    let left = n;
    const tick = () => {
      viewer.scene.requestRender();
      if (--left <= 0) { viewer.scene.postRender.removeEventListener(tick); resolve(); }
    };
    viewer.scene.postRender.addEventListener(tick);
  });
}

function centrePixels(viewer, fraction) {
  const src = viewer.scene.canvas;
  const w = Math.round(src.width * fraction);
  const h = Math.round(src.height * fraction);
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  const ctx = c.getContext("2d");
  ctx.drawImage(src, (src.width - w) / 2, (src.height - h) / 2, w, h, 0, 0, w, h);
  return ctx.getImageData(0, 0, w, h).data;
}

// the pixels of the centre (a fraction of each side) with and without the 3D content
async function withAndWithout(viewer, city, fraction) {
  await nextFrames(viewer, 3);
  const full = centrePixels(viewer, fraction);
  const shown = [];
  if (city.tileset) { shown.push([city.tileset, city.tileset.show]); city.tileset.show = false; }
  for (let i = 0; i < viewer.dataSources.length; i++) {
    const ds = viewer.dataSources.get(i);
    shown.push([ds, ds.show]);
    ds.show = false;
  }
  await nextFrames(viewer, 3);
  const bare = centrePixels(viewer, fraction);
  for (const [obj, was] of shown) obj.show = was;
  await nextFrames(viewer, 2);
  return [full, bare];
}

export async function centreFill(viewer, city, fraction = 0.4, threshold = 40) {
  const [full, bare] = await withAndWithout(viewer, city, fraction);
  let differ = 0;
  const n = full.length / 4;
  for (let i = 0; i < full.length; i += 4) {
    const d = Math.abs(full[i] - bare[i]) + Math.abs(full[i + 1] - bare[i + 1]) + Math.abs(full[i + 2] - bare[i + 2]);
    if (d > threshold) differ++;
  }
  return { share: differ / n, pixels: n };
}

export async function contentBox(viewer, city, threshold = 40) {
  const [full, bare] = await withAndWithout(viewer, city, 1);
  const w = Math.round(viewer.scene.canvas.width);
  const h = full.length / 4 / w;
  const xs = [];
  const ys = [];
  for (let i = 0; i < full.length; i += 4) {
    const d = Math.abs(full[i] - bare[i]) + Math.abs(full[i + 1] - bare[i + 1]) + Math.abs(full[i + 2] - bare[i + 2]);
    if (d > threshold) { const p = i / 4; xs.push(p % w); ys.push(Math.floor(p / w)); }
  }
  if (!xs.length) return { share: 0, cx: null, cy: null, box: null };
  const q = (a, f) => a[Math.min(a.length - 1, Math.floor(f * a.length))];
  xs.sort((a, b) => a - b);
  ys.sort((a, b) => a - b);
  const mean = (a) => a.reduce((s, v) => s + v, 0) / a.length;
  return { share: xs.length / (w * h), cx: mean(xs) / w, cy: mean(ys) / h,
           box: [q(xs, 0.05) / w, q(ys, 0.05) / h, q(xs, 0.95) / w, q(ys, 0.95) / h] };
}

function glyphBitmap(text, font) {
  const c = document.createElement("canvas");
  c.width = 40;
  c.height = 40;
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, 40, 40);
  ctx.fillStyle = "#000";
  ctx.font = font;
  ctx.textBaseline = "top";
  ctx.fillText(text, 4, 4);
  const d = ctx.getImageData(0, 0, 40, 40).data;
  let ink = 0;
  let bits = "";
  for (let i = 0; i < d.length; i += 4) {
    const on = d[i] < 128;
    ink += on ? 1 : 0;
    bits += on ? "1" : "0";
  }
  return { bits, ink };
}

// two Han characters drawn with the page's own font must differ from each other and from a character
// no font has (U+10FFFD, a private-use code point): with no CJK font all three are one box
export function glyphs(font = getComputedStyle(document.body).fontFamily) {
  const f = `28px ${font}`;
  // 龙 (U+9F99) and 岗 (U+5C97), escaped: the page's words live in the catalogues only
  const a = glyphBitmap("\u9f99", f);
  const b = glyphBitmap("\u5c97", f);
  const box = glyphBitmap("\u{10FFFD}", f);
  return { font, long: a.ink, gang: b.ink, box: box.ink,
           distinct: a.bits !== b.bits && a.bits !== box.bits && b.bits !== box.bits,
           width: (() => { const c = document.createElement("canvas").getContext("2d"); c.font = f; return c.measureText("\u9f99\u5c97").width; })() };
}
