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

  // User pickers: fill the datalist as the user types.
  var timer = null;
  document.querySelectorAll('[data-user-lookup]').forEach(function (input) {
    var list = document.getElementById(input.getAttribute('data-user-lookup'));
    input.addEventListener('input', function () {
      clearTimeout(timer);
      var q = input.value.trim();
      if (!q) { return; }
      timer = setTimeout(function () {
        fetch('/lookup/users?q=' + encodeURIComponent(q), { credentials: 'same-origin' })
          .then(function (r) { return r.ok ? r.json() : []; })
          .then(function (users) {
            list.innerHTML = '';
            users.forEach(function (u) {
              var option = document.createElement('option');
              option.value = u.username;
              option.label = u.name + (u.unit ? '（' + u.unit + '）' : '');
              list.appendChild(option);
            });
          });
      }, 200);
    });
  });

  // Confirm destructive actions.
  document.addEventListener('click', function (event) {
    var button = event.target.closest('[data-confirm]');
    if (button && !window.confirm(button.getAttribute('data-confirm'))) { event.preventDefault(); }
  });

  // Do not submit twice.
  document.querySelectorAll('form').forEach(function (form) {
    form.addEventListener('submit', function () {
      setTimeout(function () {
        form.querySelectorAll('button[type=submit], button:not([type])').forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });
})();
