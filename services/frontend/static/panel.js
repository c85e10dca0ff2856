// Refreshes the panel in place every few seconds: fetches the server-rendered
// fragment and swaps it in, so the page never flashes. Without JavaScript the
// page works the same (a <noscript> meta refresh reloads it instead).
(function () {
  'use strict';
  document.documentElement.classList.add('js');
  var panel = document.getElementById('panel');
  if (!panel || !window.fetch) { return; }
  var every = (parseInt(panel.getAttribute('data-refresh'), 10) || 15) * 1000;
  var busy = false;
  var again = false;

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch('/fragment/panel' + window.location.search, { cache: 'no-store', credentials: 'same-origin' })
      .then(function (response) {
        if (!response.ok) { throw new Error('HTTP ' + response.status); }
        return response.text();
      })
      .then(function (html) {
        panel.innerHTML = html; // server-rendered and escaped
        document.body.classList.remove('offline');
      })
      .catch(function () { document.body.classList.add('offline'); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  setInterval(function () { if (!document.hidden) { refresh(); } }, every);
  document.addEventListener('visibilitychange', function () { if (!document.hidden) { refresh(); } });

  var select = document.getElementById('city-select');
  if (select && window.URL && window.history) {
    select.addEventListener('change', function () {
      var url = new URL(window.location.href);
      url.searchParams.set('city', select.value);
      window.history.replaceState(null, '', url.toString());
      refresh();
    });
  }
})();
