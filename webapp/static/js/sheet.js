/* The handling sheet's Print button (a file of its own: the CSP forbids inline scripts). */
(function () {
  'use strict';
  document.querySelectorAll('[data-print]').forEach(function (button) {
    button.addEventListener('click', function () { window.print(); });
  });
}());
