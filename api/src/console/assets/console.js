// Berth console: the few behaviours htmx does not have. No inline scripts anywhere (the
// content security policy forbids them), so everything is wired here by data attributes.
(function () {
  'use strict';

  // Forms marked hx-ext="berth-json" send JSON to the API: `config.KEY` becomes
  // {"config": {"KEY": ...}}, a name ending in [] collects a list, and empty optional
  // fields are left out.
  htmx.defineExtension('berth-json', {
    onEvent: function (name, evt) {
      if (name === 'htmx:configRequest') {
        evt.detail.headers['Content-Type'] = 'application/json';
      }
    },
    encodeParameters: function (xhr, parameters) {
      xhr.overrideMimeType('application/json');
      var body = {};
      parameters.forEach(function (value, name) {
        if (name === 'csrf') { return; }
        if (name.slice(-2) === '[]') {
          var list = name.slice(0, -2);
          (body[list] = body[list] || []).push(value);
          return;
        }
        if (value === '') { return; }
        var path = name.split('.');
        var at = body;
        for (var i = 0; i < path.length - 1; i++) {
          at = at[path[i]] = at[path[i]] || {};
        }
        at[path[path.length - 1]] = value;
      });
      return JSON.stringify(body);
    }
  });

  function problemBox(elt) {
    var form = elt.closest('form, section');
    return (form && form.querySelector('.problem')) || document.getElementById('problem');
  }

  function showProblem(elt, xhr) {
    var box = problemBox(elt);
    if (!box) { return; }
    var text = 'The request failed (' + xhr.status + ').';
    var fields = [];
    try {
      var problem = JSON.parse(xhr.responseText);
      text = problem.title + ': ' + problem.detail;
      fields = problem.errors || [];
    } catch (e) {
      // A console page's own error: its problem paragraph and field list.
      var page = new DOMParser().parseFromString(xhr.responseText, 'text/html');
      var said = page.querySelector('main .problem');
      if (said) { text = said.textContent; }
      page.querySelectorAll('main li').forEach(function (li) {
        fields.push({ field: '', message: li.textContent });
      });
    }
    box.textContent = text;
    if (fields.length) {
      var list = document.createElement('ul');
      fields.forEach(function (f) {
        var item = document.createElement('li');
        item.textContent = f.field ? f.field + ': ' + f.message : f.message;
        list.appendChild(item);
      });
      box.appendChild(list);
    }
  }

  document.addEventListener('htmx:responseError', function (evt) {
    showProblem(evt.detail.elt, evt.detail.xhr);
  });
  document.addEventListener('htmx:sendError', function (evt) {
    var box = problemBox(evt.detail.elt);
    if (box) { box.textContent = 'Berth did not answer; is it running?'; }
  });

  // After an API command succeeds: clear the problem, then go to a page (data-then-go),
  // load a fragment (data-then-get into data-then-target) or show a field of the answer
  // (data-show-field into data-show-in), with {id} replaced by the answer's id.
  document.addEventListener('htmx:afterRequest', function (evt) {
    var elt = evt.detail.elt;
    if (!evt.detail.successful) { return; }
    var box = problemBox(elt);
    if (box) { box.textContent = ''; }
    var source = elt.closest('[data-then-go], [data-then-get], [data-show-field], [data-then-reload]');
    if (!source) { return; }
    if (source.dataset.thenReload !== undefined) { window.location.reload(); return; }
    var answer = {};
    try { answer = JSON.parse(evt.detail.xhr.responseText); } catch (e) { return; }
    var fill = function (url) { return url.replace('{id}', encodeURIComponent(answer.id)); };
    if (source.dataset.thenGo) {
      window.location.assign(fill(source.dataset.thenGo));
    } else if (source.dataset.thenGet) {
      htmx.ajax('GET', fill(source.dataset.thenGet), { target: source.dataset.thenTarget, swap: 'innerHTML' });
    } else if (source.dataset.showField) {
      var out = document.querySelector(source.dataset.showIn);
      out.textContent = answer[source.dataset.showField];
      out.closest('[hidden]') && out.closest('[hidden]').removeAttribute('hidden');
    }
    if (source.tagName === 'FORM' && source.dataset.reset !== undefined) { source.reset(); }
  });

  // The live stream ends the page when the session ends (key revoked, user disabled).
  document.addEventListener('htmx:sseMessage', function (evt) {
    if (evt.detail && evt.detail.type === 'signed-out') {
      window.location.assign('/sign-in?ended=1');
    }
  });

  // Copy buttons: data-copy names the element whose text is copied.
  document.addEventListener('click', function (evt) {
    var button = evt.target.closest('[data-copy]');
    if (!button) { return; }
    var text = document.querySelector(button.dataset.copy).textContent;
    navigator.clipboard.writeText(text).then(function () {
      button.textContent = 'Copied';
    }, function () {
      button.textContent = 'Select and copy';
    });
  });

  // Logs: an EventSource on the API's follow stream, each line added as text (never as
  // HTML: a server's output is not trusted markup).
  document.addEventListener('click', function (evt) {
    var button = evt.target.closest('[data-follow-logs]');
    if (!button) { return; }
    var out = document.querySelector(button.dataset.followLogs);
    if (button.berthSource) {
      button.berthSource.close();
      button.berthSource = null;
      button.textContent = 'Follow the logs';
      return;
    }
    out.textContent = '';
    var source = new EventSource(button.dataset.url);
    source.onmessage = function (e) {
      out.appendChild(document.createTextNode(e.data + '\n'));
      out.scrollTop = out.scrollHeight;
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        out.appendChild(document.createTextNode('[no output: the server has no container or process now]\n'));
      }
    };
    button.berthSource = source;
    button.textContent = 'Stop following';
  });

  // The time slider picks a change of the server's history: its position is shown and
  // put in the field htmx sends. Captured, so it runs before htmx reads the field.
  document.addEventListener('input', function (evt) {
    var slider = evt.target.closest('input[data-positions]');
    if (!slider) { return; }
    var position = slider.dataset.positions.split(',')[slider.value];
    var out = document.getElementById(slider.dataset.label);
    if (out) { out.textContent = 'position ' + position; }
    var field = document.getElementById(slider.dataset.position);
    if (field) { field.value = position; }
  }, true);

  // A live stream the browser had to open again (not merely reconnect) resumes after the
  // last message this page took, not from when the page was read.
  var lastEventId = null;
  document.addEventListener('htmx:sseMessage', function (evt) {
    if (evt.detail && evt.detail.lastEventId) { lastEventId = evt.detail.lastEventId; }
  });
  var createEventSource = htmx.createEventSource || function (url) {
    return new EventSource(url, { withCredentials: true });
  };
  htmx.createEventSource = function (url) {
    if (lastEventId !== null) {
      url = url.replace(/([?&]after=)\d+/, '$1' + encodeURIComponent(lastEventId));
    }
    return createEventSource(url);
  };
})();
