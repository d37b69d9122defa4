// jobhost dashboard: refreshes the parts of a page marked data-live.
// Every few seconds it fetches the page again and swaps in the elements of
// the same id; the page works without it (reload to refresh).
(function () {
  'use strict';
  var interval = parseInt(document.body.getAttribute('data-refresh') || '0', 10);
  var status = document.getElementById('live-status');
  if (!interval || !document.querySelector('[data-live]') || !window.fetch || !window.DOMParser) {
    return;
  }
  var timer = null;
  var failures = 0;
  var busy = false;

  function say(text, bad) {
    if (status) {
      status.textContent = text;
      status.className = bad ? 'live bad' : 'live';
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, interval * Math.min(1 + failures, 6));
  }

  function refresh() {
    if (document.hidden || busy) {
      schedule();
      return;
    }
    busy = true;
    fetch(window.location.href, {
      headers: { 'Accept': 'text/html', 'X-Dashboard-Refresh': '1' },
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'manual'
    }).then(function (resp) {
      if (!resp.ok) {
        throw new Error(resp.status ? resp.status + ' ' + resp.statusText : 'signed out?');
      }
      return resp.text();
    }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, 'text/html');
      var parts = document.querySelectorAll('[data-live]');
      for (var i = 0; i < parts.length; i++) {
        var fresh = parts[i].id && doc.getElementById(parts[i].id);
        if (fresh) {
          parts[i].replaceWith(document.importNode(fresh, true));
        }
      }
      failures = 0;
      say('live · ' + new Date().toLocaleTimeString(), false);
    }).catch(function (err) {
      failures++;
      say('refresh failed: ' + err.message, true);
    }).then(function () {
      busy = false;
      schedule();
    });
  }

  document.addEventListener('visibilitychange', function () {
    if (!document.hidden) {
      refresh();
    }
  });
  say('live', false);
  schedule();
})();
