"""The HTML, CSS and JavaScript of the cluster explorer page (see :mod:`.explorer`).

``@@TITLE@@`` (escaped text) and ``@@DATA@@`` (the JSON of
:func:`mmfec.visualization.explorer.explorer_data`) are filled in; nothing else is
loaded. The script only uses what every current browser has (canvas, typed arrays,
``atob``), and runs synchronously up to the probe, so ``chromium --dump-dom`` sees
``<pre id="probe">`` filled in.
"""

PAGE_TEMPLATE = r'''<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>FEC cluster explorer: @@TITLE@@</title>
<style>
  body { background: #181818; color: #e8e8e8; font: 14px/1.4 system-ui, sans-serif;
         margin: 12px; }
  h1 { font-size: 18px; margin: 0 0 4px; }
  .hint { color: #aaa; margin: 0 0 10px; }
  #controls { margin: 0 0 10px; display: flex; flex-wrap: wrap; gap: 4px 14px;
              align-items: center; }
  #controls label { white-space: nowrap; cursor: pointer; }
  #controls button { background: #333; color: #eee; border: 1px solid #555;
                     border-radius: 3px; padding: 1px 8px; cursor: pointer; }
  #main { display: grid; grid-template-columns: minmax(0, 1fr) 380px; gap: 16px;
          align-items: start; }
  #panels { display: flex; flex-wrap: wrap; gap: 8px; }
  #side { position: sticky; top: 8px; }
  .panel { background: #222; padding: 4px; border-radius: 3px; width: var(--side); }
  .panel .name, .panel .sub { overflow: hidden; text-overflow: ellipsis;
                              white-space: nowrap; }
  .panel .name { font-weight: 600; font-size: 13px; }
  .panel .sub { color: #aaa; font-size: 11px; min-height: 15px; }
  .panel .view { position: relative; }
  .panel img, .panel canvas { display: block; width: 100%; height: auto;
                              image-rendering: pixelated; cursor: crosshair; }
  .panel .marker { position: absolute; left: 0; top: 0; pointer-events: none; }
  table { border-collapse: collapse; font-size: 13px; }
  th, td { padding: 2px 8px; text-align: right; border-bottom: 1px solid #333; }
  th:first-child, td:first-child { text-align: left; }
  #probe { white-space: pre-wrap; word-break: break-all; font-size: 11px; color: #888; }
</style>
</head>
<body>
<h1>FEC cluster explorer: @@TITLE@@</h1>
<p class="hint" id="hint">Point at a pixel to highlight its cluster in every layer (click
to pin or unpin). Encoding layers show head <span id="head"></span>. Colours are per cluster
and mean nothing from panel to panel.</p>
<div id="controls"></div>
<div id="main">
  <div id="panels"></div>
  <div id="side">
    <table id="lineage"><thead><tr><th>layer</th><th>cluster</th><th>size (px)</th>
      <th>similarity</th></tr></thead><tbody></tbody></table>
    <pre id="probe"></pre>
  </div>
</div>
<script type="application/json" id="mmfec-data">@@DATA@@</script>
<script>
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('mmfec-data').textContent);
  var W = D.image.width, H = D.image.height, G1 = D.grid[1];
  var MAX_CANVAS = 768, DIM = 0.35, ALPHA = 0.45, GOLDEN = 0.6180339887498949;

  function bytes(b64) {
    var text = atob(b64), out = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
    return out;
  }
  function decode(field) {  // little-endian unsigned ints, as explorer.py writes them
    var raw = bytes(field.data);
    if (field.type === 'u8') return raw;
    var view = new DataView(raw.buffer), step = field.type === 'u16' ? 2 : 4;
    var out = new Uint32Array(raw.length / step);
    for (var i = 0; i < out.length; i++)
      out[i] = step === 2 ? view.getUint16(2 * i, true) : view.getUint32(4 * i, true);
    return out;
  }

  // ---------------------------------------------------------------- the maps
  var rowOf = decode(D.pixel_rows), colOf = decode(D.pixel_cols);
  var points1 = D.grid[0] * D.grid[1];
  var rowCount = new Float64Array(D.grid[0]), colCount = new Float64Array(G1);
  for (var y = 0; y < H; y++) rowCount[rowOf[y]] += 1;
  for (var x = 0; x < W; x++) colCount[colOf[x]] += 1;
  var point = new Int32Array(points1);  // stage-s point of every stride-4 point
  for (var q = 0; q < points1; q++) point[q] = q;
  var layers = [];
  D.layers.forEach(function (L) {
    var ids = decode(L.ids), sim = decode(L.similarity);
    var cluster = new Int32Array(points1), simAt = new Int32Array(points1);
    for (var q = 0; q < points1; q++) {
      simAt[q] = point[q];           // the point that joined a center in this layer
      cluster[q] = ids[point[q]];
    }
    if (L.kind === 'pooling') point = cluster;  // the chain moves on to the next stage
    if (!L.shown) return;
    var size = new Float64Array(L.centers[0] * L.centers[1]);
    for (var q2 = 0; q2 < points1; q2++)
      size[cluster[q2]] += rowCount[(q2 / G1) | 0] * colCount[q2 % G1];
    var used = 0;
    for (var c = 0; c < size.length; c++) if (size[c] > 0) used++;
    var lo = L.similarity.range[0], hi = L.similarity.range[1];
    layers.push({info: L, cluster: cluster, simAt: simAt, sim: sim, size: size, used: used,
                 simValue: function (q) {
                   return lo + sim[simAt[q]] / L.similarity.levels * (hi - lo); },
                 visible: true});
  });

  function pixelPoint(x, y) { return rowOf[y] * G1 + colOf[x]; }
  function lineage(x, y) {
    var q = pixelPoint(x, y);
    return layers.map(function (M) {
      var c = M.cluster[q];
      return {layer: M.info.name, cluster: c, size: M.size[c],
              similarity: Math.round(M.simValue(q) * 1e4) / 1e4};
    });
  }

  // ---------------------------------------------------------------- the probe
  document.getElementById('head').textContent = D.head;
  var params = new URLSearchParams(window.location.search);
  var selected = null, pinned = false;
  if (params.has('probe')) {
    var xy = params.get('probe').split(',').map(function (v) { return parseInt(v, 10); });
    var probe = document.getElementById('probe');
    if (xy.length !== 2 || !(xy[0] >= 0 && xy[0] < W && xy[1] >= 0 && xy[1] < H)) {
      probe.textContent = JSON.stringify({error: 'probe must be X,Y inside the ' + W + 'x' +
                                          H + ' image', probe: params.get('probe')});
    } else {
      probe.textContent = JSON.stringify({x: xy[0], y: xy[1], head: D.head,
                                          lineage: lineage(xy[0], xy[1])});
      selected = {x: xy[0], y: xy[1]};
      pinned = true;
    }
  }

  // ---------------------------------------------------------------- the page
  var scale = Math.min(1, MAX_CANVAS / Math.max(W, H));
  var CW = Math.max(1, Math.round(W * scale)), CH = Math.max(1, Math.round(H * scale));
  var side = Math.max(W, H) < 256 ? 256 : Math.min(320, Math.max(W, H));
  document.getElementById('panels').style.setProperty('--side', side + 'px');
  var canvasPoint = new Int32Array(CW * CH);
  for (var v = 0; v < CH; v++) {
    var py = Math.min(H - 1, Math.floor((v + 0.5) * H / CH));
    for (var u = 0; u < CW; u++) {
      var px = Math.min(W - 1, Math.floor((u + 0.5) * W / CW));
      canvasPoint[v * CW + u] = pixelPoint(px, py);
    }
  }

  function colour(id) {  // distinct hues (golden ratio), a few saturation/value levels
    var h = (id * GOLDEN) % 1, s = [0.9, 0.6, 0.75][id % 3],
        val = [0.95, 0.8, 0.65][((id / 3) | 0) % 3];
    var i = Math.floor(h * 6), f = h * 6 - i, p = val * (1 - s), t = val * (1 - (1 - f) * s),
        n = val * (1 - f * s);
    var rgb = [[val, t, p], [n, val, p], [p, val, t], [p, n, val], [t, p, val], [val, p, n]][i % 6];
    return [rgb[0] * 255, rgb[1] * 255, rgb[2] * 255];
  }

  function panel(name, sub, element) {
    var box = document.createElement('div'), view = document.createElement('div');
    box.className = 'panel';
    box.innerHTML = '<div class="name"></div><div class="sub"></div>';
    box.children[0].textContent = name;
    box.children[1].textContent = sub;
    view.className = 'view';
    view.appendChild(element);
    var marker = document.createElement('canvas');
    marker.className = 'marker';
    marker.width = CW; marker.height = CH;
    view.appendChild(marker);
    box.appendChild(view);
    document.getElementById('panels').appendChild(box);
    element.addEventListener('mousemove', function (e) { if (!pinned) pointAt(e, element); });
    element.addEventListener('click', function (e) { pinned = !pinned; pointAt(e, element); });
    return {box: box, marker: marker, sub: box.children[1]};
  }

  var img = new Image();
  img.alt = D.title;
  img.width = W; img.height = H;
  var imagePanel = panel('image', W + 'x' + H + ' px', img);
  var tbody = document.querySelector('#lineage tbody');
  layers.forEach(function (M) {
    var canvas = document.createElement('canvas');
    canvas.width = CW; canvas.height = CH;
    M.panel = panel(M.info.name + ' (' + M.used + ' clusters)', M.info.path, canvas);
    M.canvas = canvas;
    M.row = document.createElement('tr');
    M.row.innerHTML = '<td></td><td></td><td></td><td></td>';
    M.row.children[0].textContent = M.info.name;
    tbody.appendChild(M.row);
    M.pixels = new Int32Array(CW * CH);
    for (var i = 0; i < CW * CH; i++) M.pixels[i] = M.cluster[canvasPoint[i]];
  });

  var controls = document.getElementById('controls');
  controls.appendChild(document.createTextNode('layers:'));
  function setVisible(M, on) {
    M.visible = on;
    M.panel.box.style.display = on ? '' : 'none';
    M.row.style.display = on ? '' : 'none';
    M.toggle.checked = on;
  }
  layers.forEach(function (M) {
    var label = document.createElement('label'), box = document.createElement('input');
    box.type = 'checkbox'; box.checked = true;
    box.addEventListener('change', function () { setVisible(M, box.checked); });
    M.toggle = box;
    label.appendChild(box);
    label.appendChild(document.createTextNode(' ' + M.info.name));
    controls.appendChild(label);
  });
  [['all', true], ['none', false]].forEach(function (b) {
    var button = document.createElement('button');
    button.textContent = b[0];
    button.addEventListener('click', function () {
      layers.forEach(function (M) { setVisible(M, b[1]); });
    });
    controls.appendChild(button);
  });

  var base = null;  // the image at canvas size, RGBA
  function drawBase(M) {
    var ctx = M.canvas.getContext('2d'), out = ctx.createImageData(CW, CH), d = out.data;
    var ids = M.pixels;
    for (var i = 0; i < CW * CH; i++) {
      var c = colour(ids[i]), o = 4 * i;
      var edge = ((i % CW) < CW - 1 && ids[i + 1] !== ids[i]) ||
                 (i + CW < CW * CH && ids[i + CW] !== ids[i]);
      for (var k = 0; k < 3; k++)
        d[o + k] = edge ? 255 : (base ? (1 - ALPHA) * base[o + k] + ALPHA * c[k] : c[k]);
      d[o + 3] = 255;
    }
    M.base = out;
    ctx.putImageData(out, 0, 0);
  }
  function drawHighlight(M, target) {
    var ctx = M.canvas.getContext('2d');
    if (target === null) { ctx.putImageData(M.base, 0, 0); return; }
    var out = ctx.createImageData(CW, CH), d = out.data, b = M.base.data, ids = M.pixels;
    for (var i = 0; i < CW * CH; i++) {
      var o = 4 * i, f = ids[i] === target ? 1 : DIM;
      d[o] = b[o] * f; d[o + 1] = b[o + 1] * f; d[o + 2] = b[o + 2] * f; d[o + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
  }
  function drawMarker(target, x, y) {
    var ctx = target.getContext('2d');
    ctx.clearRect(0, 0, CW, CH);
    if (x === null) return;
    var u = (x + 0.5) * CW / W, v = (y + 0.5) * CH / H, r = Math.max(4, CW / 32);
    ctx.lineWidth = Math.max(1, CW / 256);
    [['#000', ctx.lineWidth * 3], ['#ff0', ctx.lineWidth]].forEach(function (style) {
      ctx.strokeStyle = style[0]; ctx.lineWidth = style[1];
      ctx.beginPath();
      ctx.moveTo(u - r, v); ctx.lineTo(u + r, v); ctx.moveTo(u, v - r); ctx.lineTo(u, v + r);
      ctx.stroke();
    });
  }
  function show() {
    var q = selected ? pixelPoint(selected.x, selected.y) : null;
    drawMarker(imagePanel.marker, selected ? selected.x : null, selected ? selected.y : null);
    imagePanel.sub.textContent = selected ? 'pixel (' + selected.x + ', ' + selected.y + ')'
                                          : W + 'x' + H + ' px';
    layers.forEach(function (M) {
      var c = q === null ? null : M.cluster[q];
      drawHighlight(M, c);
      drawMarker(M.panel.marker, selected ? selected.x : null, selected ? selected.y : null);
      var cells = M.row.children;
      cells[1].textContent = c === null ? '' : c;
      cells[2].textContent = c === null ? '' : M.size[c] + ' (' +
        (100 * M.size[c] / (W * H)).toFixed(1) + '%)';
      cells[3].textContent = c === null ? '' : M.simValue(q).toFixed(3);
      M.panel.sub.textContent = c === null ? M.info.path : 'cluster ' + c + ': ' + M.size[c] +
        ' px, similarity ' + M.simValue(q).toFixed(3);
    });
  }
  var pending = false;
  function pointAt(e, element) {
    var rect = element.getBoundingClientRect();
    var x = Math.floor((e.clientX - rect.left) / rect.width * W);
    var y = Math.floor((e.clientY - rect.top) / rect.height * H);
    selected = {x: Math.max(0, Math.min(W - 1, x)), y: Math.max(0, Math.min(H - 1, y))};
    if (!pending) {
      pending = true;
      window.requestAnimationFrame(function () { pending = false; show(); });
    }
  }
  function render() {
    try {
      var scratch = document.createElement('canvas');
      scratch.width = CW; scratch.height = CH;
      var ctx = scratch.getContext('2d');
      ctx.drawImage(img, 0, 0, CW, CH);
      base = ctx.getImageData(0, 0, CW, CH).data;
    } catch (err) {
      base = null;  // the clusters still show, without the image under them
    }
    layers.forEach(drawBase);
    show();
    document.body.setAttribute('data-ready', '1');
  }
  img.onload = render;
  img.src = D.image.src;
  layers.forEach(function (M) {
    var ctx = M.canvas.getContext('2d');
    ctx.fillStyle = '#333'; ctx.fillRect(0, 0, CW, CH);
  });
})();
</script>
</body>
</html>
'''
