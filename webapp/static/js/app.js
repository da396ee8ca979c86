/* emflow: small progressive enhancements; every page works without them. */
(function () {
  'use strict';

  // Repeating table rows: add a row from the <template>, remove a row.
  document.querySelectorAll('[data-table]').forEach(function (widget) {
    var tbody = widget.querySelector('tbody');
    var template = widget.querySelector('template');
    var next = tbody.rows.length;
    widget.querySelector('[data-add-row]').addEventListener('click', function () {
      var html = template.innerHTML.split('__i__').join(String(next++));
      tbody.insertAdjacentHTML('beforeend', html);
      var first = tbody.lastElementChild.querySelector('input, select');
      if (first) { first.focus(); }
    });
    widget.addEventListener('click', function (event) {
      var button = event.target.closest('[data-remove-row]');
      if (button && tbody.rows.length > 1) { button.closest('tr').remove(); }
      else if (button) { button.closest('tr').querySelectorAll('input, select').forEach(function (i) { i.value = ''; }); }
    });
  });

  // Pickers: fill the input's datalist from a lookup as the user types.
  var timer = null;
  function lookup(input, url, toOption) {
    var list = document.getElementById(input.getAttribute('list'));
    input.addEventListener('input', function () {
      clearTimeout(timer);
      var q = input.value.trim();
      if (!q) { return; }
      timer = setTimeout(function () {
        fetch(url + '?q=' + encodeURIComponent(q), { credentials: 'same-origin' })
          .then(function (r) { return r.ok ? r.json() : []; })
          .then(function (items) {
            list.innerHTML = '';
            items.forEach(function (item) {
              var option = document.createElement('option');
              var o = toOption(item);
              option.value = o.value;
              option.label = o.label;
              list.appendChild(option);
            });
          });
      }, 200);
    });
  }
  document.querySelectorAll('[data-user-lookup]').forEach(function (input) {
    lookup(input, '/lookup/users', function (u) {
      return { value: u.username, label: u.name + (u.unit ? '（' + u.unit + '）' : '') };
    });
  });
  document.querySelectorAll('[data-lookup-url]').forEach(function (input) {
    lookup(input, input.getAttribute('data-lookup-url'), function (item) { return item; });
  });

  // Common opinions: a tap puts the phrase into the opinion box; "save" keeps the typed text as one's own.
  var opinion = document.querySelector('[data-opinion]');
  document.querySelectorAll('[data-phrase]').forEach(function (chip) {
    chip.addEventListener('click', function () {
      if (!opinion) { return; }
      var text = chip.getAttribute('data-phrase');
      opinion.value = opinion.value.trim() && opinion.value.indexOf(text) === -1 ? opinion.value.trim() + '，' + text : text;
      opinion.focus();
    });
  });
  var saver = document.querySelector('[data-save-phrase]');
  if (saver && opinion) {
    saver.addEventListener('click', function () {
      var text = opinion.value.trim();
      var token = document.querySelector('input[name=csrf_token]');
      if (!text || !token) { return; }
      fetch('/opinions', { method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-CSRFToken': token.value, 'Accept': 'application/json' },
        body: 'text=' + encodeURIComponent(text) })
        .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
        .then(function (res) { saver.textContent = res.ok ? saver.getAttribute('data-saved') : res.body.message; saver.disabled = res.ok; });
    });
  }
  // Panels for other operations start with what was typed as the opinion, and the same "whose opinion".
  document.querySelectorAll('details.op').forEach(function (details) {
    details.addEventListener('toggle', function () {
      if (!details.open) { return; }
      var box = details.querySelector('[data-copy-opinion]');
      if (box && opinion && !box.value) { box.value = opinion.value; }
      var proxy = details.querySelector('[data-copy-proxy]');
      var chosen = document.querySelector('select[name=on_behalf_of]');
      if (proxy && chosen) { proxy.value = chosen.value; }
    });
  });

  // Handwritten signature: draw with a finger, pen or mouse; the PNG goes in a hidden field on submit.
  document.querySelectorAll('[data-signature]').forEach(function (block) {
    var canvas = block.querySelector('canvas');
    var field = block.querySelector('input[name=signature]');
    var ctx = canvas.getContext('2d');
    var drawn = false, last = null;
    function size() {
      var ratio = window.devicePixelRatio || 1, width = canvas.clientWidth, height = canvas.clientHeight;
      canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio);
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.lineWidth = 2.6; ctx.lineCap = 'round'; ctx.lineJoin = 'round'; ctx.strokeStyle = '#111';
      if (field.value) {  // a signature kept after a failed validation is shown again
        var img = new Image();
        img.onload = function () { ctx.drawImage(img, 0, 0, width, height); drawn = true; };
        img.src = field.value;
      }
    }
    function point(event) {
      var box = canvas.getBoundingClientRect();
      return { x: event.clientX - box.left, y: event.clientY - box.top };
    }
    canvas.addEventListener('pointerdown', function (event) {
      canvas.setPointerCapture(event.pointerId); last = point(event);
      ctx.beginPath(); ctx.arc(last.x, last.y, 1.2, 0, Math.PI * 2); ctx.fill(); drawn = true;
      event.preventDefault();
    });
    canvas.addEventListener('pointermove', function (event) {
      if (!last) { return; }
      var p = point(event);
      ctx.beginPath(); ctx.moveTo(last.x, last.y); ctx.lineTo(p.x, p.y); ctx.stroke();
      last = p; event.preventDefault();
    });
    ['pointerup', 'pointercancel', 'pointerleave'].forEach(function (name) {
      canvas.addEventListener(name, function () { last = null; });
    });
    block.querySelector('[data-clear-signature]').addEventListener('click', function () {
      ctx.clearRect(0, 0, canvas.width, canvas.height); drawn = false; field.value = '';
    });
    var form = block.closest('form');
    form.addEventListener('submit', function () {
      field.value = drawn ? canvas.toDataURL('image/png') : '';
    });
    size();
  });

  // File pickers: the chosen files with their sizes in the page's language, and no upload of a file the server
  // would refuse for its size (the request would fail as a whole and the user would have to start again).
  function fileSize(bytes) {
    if (bytes < 1024) { return bytes + ' B'; }
    return bytes < 1024 * 1024 ? (bytes / 1024).toFixed(1) + ' KB' : (bytes / 1024 / 1024).toFixed(1) + ' MB';
  }
  document.querySelectorAll('[data-file-picker]').forEach(function (picker) {
    var input = picker.querySelector('input[type=file]');
    var names = picker.querySelector('.file-picker-names');
    var limit = Number(picker.getAttribute('data-limit'));
    picker.classList.add('enhanced');
    input.addEventListener('change', function () {
      names.textContent = input.files.length ? '' : picker.getAttribute('data-none');
      Array.prototype.forEach.call(input.files, function (file) {
        var item = document.createElement('span');
        item.className = 'file-picker-name' + (file.size > limit ? ' error' : '');
        item.textContent = file.name + '（' + fileSize(file.size) + '）' +
          (file.size > limit ? picker.getAttribute('data-too-big') : '');
        names.appendChild(item);
      });
    });
  });

  // Confirm destructive actions.
  document.addEventListener('click', function (event) {
    var button = event.target.closest('[data-confirm]');
    if (button && !window.confirm(button.getAttribute('data-confirm'))) { event.preventDefault(); }
  });

  // Keep back a file marked too large (above); otherwise do not submit twice.
  document.querySelectorAll('form').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      var tooLarge = form.querySelector('[data-file-picker] .file-picker-name.error');
      if (tooLarge) {
        event.preventDefault();
        tooLarge.closest('[data-file-picker]').querySelector('input[type=file]').focus();
        tooLarge.scrollIntoView({ block: 'center' });
        return;
      }
      setTimeout(function () {
        form.querySelectorAll('button[type=submit], button:not([type])').forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });
})();
