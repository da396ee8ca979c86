/* Render the process diagram with bpmn-js and mark completed and current elements. */
(function () {
  'use strict';
  var container = document.querySelector('.diagram');
  var source = document.getElementById('diagram-xml');
  if (!container || !source || typeof BpmnJS === 'undefined') { return; }
  var xml = JSON.parse(source.textContent);
  var completed = JSON.parse(container.getAttribute('data-completed') || '[]');
  var active = JSON.parse(container.getAttribute('data-active') || '[]');
  container.innerHTML = '';
  var viewer = new BpmnJS({ container: container });
  viewer.importXML(xml).then(function () {
    var canvas = viewer.get('canvas');
    var registry = viewer.get('elementRegistry');
    canvas.zoom('fit-viewport', 'auto');
    completed.forEach(function (id) { if (registry.get(id) && active.indexOf(id) < 0) { canvas.addMarker(id, 'completed'); } });
    active.forEach(function (id) { if (registry.get(id)) { canvas.addMarker(id, 'current'); } });
    container.setAttribute('data-rendered', 'true');
  }).catch(function (err) {
    container.textContent = 'Diagram error: ' + err.message;
  });
})();
