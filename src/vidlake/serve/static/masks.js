// Masks and boxes drawn in the browser: COCO RLE (as pycocotools writes it, /clips/{id}?masks=1)
// decoded here, no server round trip per frame. A canvas with the indexed frame's aspect lies
// over the image or the video (CSS), and masks and boxes (pixels of the indexed frame, which
// may be smaller than the source) are scaled to it, so they line up at any displayed size.
"use strict";

const Masks = (() => {
  // The overlay palette of vidlake.query.preview (OVERLAY_PALETTE), given to the concepts in
  // their sorted order, so the page and the GIF/PNG previews colour a clip alike.
  const PALETTE = [
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [250, 190, 212], [0, 0, 128],
    [128, 0, 0], [128, 128, 0],
  ];
  const ALPHA = 0.55; // preview.MASK_ALPHA

  function colors(concepts) {
    const out = new Map();
    [...new Set(concepts)].sort().forEach((c, i) => out.set(c, PALETTE[i % PALETTE.length]));
    return out;
  }

  function css(rgb, alpha) {
    return "rgba(" + rgb.join(",") + "," + (alpha === undefined ? 1 : alpha) + ")";
  }

  // Run lengths of COCO's compressed counts string (pycocotools rleFrString): each count in
  // 5-bit groups, 6 bits a character from '0' (48), bit 5 "more follows", the last group's
  // bit 4 the sign; from the third count on, each is a difference to the one two before.
  // Arithmetic rather than JavaScript's 32-bit shifts, which wrap past 6 groups.
  function runLengths(counts) {
    const runs = [];
    let p = 0;
    while (p < counts.length) {
      let x = 0;
      let k = 0;
      let more = true;
      while (more) {
        const c = counts.charCodeAt(p) - 48;
        x += (c & 0x1f) * 2 ** (5 * k);
        more = (c & 0x20) !== 0;
        p += 1;
        k += 1;
        if (!more && (c & 0x10)) x -= 2 ** (5 * k);
      }
      if (runs.length > 2) x += runs[runs.length - 2];
      runs.push(x);
    }
    return runs;
  }

  // An offscreen canvas of the mask's size ([height, width]) with RGB at ALPHA where it is set.
  // RLE runs go down columns (column-major), starting with a run of zeros.
  function maskCanvas(rle, rgb) {
    const [height, width] = rle.size;
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    if (!width || !height) return canvas;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(width, height);
    const pixels = new Uint32Array(image.data.buffer);
    // RGBA bytes as one little-endian 32-bit word (every browser vidlake targets).
    const word = ((Math.round(ALPHA * 255) << 24) | (rgb[2] << 16) | (rgb[1] << 8) | rgb[0]) >>> 0;
    let pos = 0;
    const total = width * height;
    runLengths(rle.counts).forEach((run, i) => {
      if (i % 2 === 1) {
        const end = Math.min(pos + run, total);
        for (let q = pos; q < end; q += 1) {
          const x = Math.floor(q / height);
          const y = q - x * height;
          pixels[y * width + x] = word;
        }
      }
      pos += run;
    });
    ctx.putImageData(image, 0, 0);
    return canvas;
  }

  // Sizes CANVAS to the device pixels it is displayed on, with the indexed frame's aspect
  // (FRAME: {width, height}), so lines and labels stay sharp over a small frame shown large.
  function fit(canvas, frame) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(frame.width, Math.round((canvas.clientWidth || frame.width) * ratio));
    const height = Math.round((width * frame.height) / frame.width);
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
  }

  // Draws on CANVAS the objects [{concept, box, score, mask}] of one frame of the indexed size
  // FRAME ({width, height}: the masks' size, the boxes' pixels): masks when options.showMasks,
  // then boxes and (unless options.labels is false) labels when options.showBoxes.
  function drawObjects(canvas, frame, objects, palette, options) {
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = false; // mask pixels stay square
    if (options.showMasks) {
      for (const o of objects) {
        if (o.mask) ctx.drawImage(maskCanvas(o.mask, palette.get(o.concept)), 0, 0, canvas.width, canvas.height);
      }
    }
    if (!options.showBoxes) return;
    const sx = canvas.width / frame.width;
    const sy = canvas.height / frame.height;
    const ratio = window.devicePixelRatio || 1;
    const font = Math.round(12 * ratio);
    ctx.font = font + "px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.lineWidth = 2 * ratio;
    for (const o of objects) {
      const [x0, y0, x1, y1] = [o.box[0] * sx, o.box[1] * sy, o.box[2] * sx, o.box[3] * sy];
      const rgb = palette.get(o.concept);
      ctx.strokeStyle = css(rgb);
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      if (options.labels === false) continue;
      const text = o.concept + (o.score === null || o.score === undefined ? "" : " " + o.score.toFixed(2));
      const w = ctx.measureText(text).width + 4 * ratio;
      const h = font + 4 * ratio;
      const x = Math.min(Math.max(0, x0), Math.max(0, canvas.width - w));
      const y = y0 - h >= 0 ? y0 - h : Math.min(y1, canvas.height - h);
      ctx.fillStyle = css(rgb);
      ctx.fillRect(x, y, w, h);
      // Black on light colours, white on dark (ITU-R BT.601 luma), as the previews do.
      ctx.fillStyle = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 ? "#000" : "#fff";
      ctx.fillText(text, x + 2 * ratio, y + 2 * ratio);
    }
  }

  // The objects of sampled frame FRAME (an index into the clip's sampled frames) of a clip's
  // masklets, as /clips/{id}?masks=1 gives them; only CONCEPTS when given.
  function objectsAt(masklets, frame, concepts) {
    const out = [];
    for (const m of masklets) {
      if (concepts && !concepts.includes(m.concept)) continue;
      for (const f of m.frames) {
        if (f.frame === frame) out.push({ concept: m.concept, box: f.box, score: f.score, mask: f.mask });
      }
    }
    return out;
  }

  return { colors, css, runLengths, maskCanvas, fit, drawObjects, objectsAt };
})();
