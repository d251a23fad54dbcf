// The call page's player (progressive enhancement; the page works without
// it): transcript times seek the page's player instead of opening the
// recording, the line being played is marked (aria-current) and kept in
// view, the ±5 s and speed buttons and the shortcut list are shown, and
// the keys k/Space, j, l, [ and ] work when the focus is not in a field.
(function () {
  "use strict";
  var audio = document.getElementById("player");
  if (!audio) return;
  var controls = document.querySelector(".player-controls");
  var shortcuts = document.querySelector(".shortcuts");
  var rows = Array.prototype.slice.call(document.querySelectorAll("table.transcript tbody tr"));
  var starts = rows.map(function (r) { return parseFloat(r.getAttribute("data-start")) || 0; });
  var speeds = [];
  var current = null;

  function seek(t) {
    var d = audio.duration;
    if (isFinite(d) && d > 0) t = Math.min(Math.max(t, 0), d);
    audio.currentTime = Math.max(t, 0);
  }

  function skip(by) { seek(audio.currentTime + by); }

  function setRate(r) {
    audio.playbackRate = r;
    speeds.forEach(function (b) {
      b.setAttribute("aria-pressed", parseFloat(b.getAttribute("data-rate")) === r ? "true" : "false");
    });
  }

  function stepRate(dir) {
    var list = speeds.map(function (b) { return parseFloat(b.getAttribute("data-rate")); });
    var i = list.indexOf(audio.playbackRate);
    if (i < 0) i = list.indexOf(1);
    var j = Math.min(Math.max(i + dir, 0), list.length - 1);
    setRate(list[j]);
  }

  function toggle() {
    if (audio.paused) {
      var p = audio.play();
      if (p && p.catch) p.catch(function () {});
    } else {
      audio.pause();
    }
  }

  // The line being played: the last whose start is at or before the time.
  function mark() {
    var t = audio.currentTime, at = -1;
    for (var i = 0; i < starts.length; i++) {
      if (starts[i] <= t + 0.05) at = i; else break;
    }
    var row = at >= 0 ? rows[at] : null;
    if (row === current) return;
    if (current) current.removeAttribute("aria-current");
    current = row;
    if (row) {
      row.setAttribute("aria-current", "true");
      if (!audio.paused) row.scrollIntoView({ block: "nearest" });
    }
  }

  if (controls) {
    controls.hidden = false;
    speeds = Array.prototype.slice.call(controls.querySelectorAll("button[data-rate]"));
    controls.addEventListener("click", function (e) {
      var b = e.target.closest("button");
      if (!b) return;
      if (b.hasAttribute("data-skip")) skip(parseFloat(b.getAttribute("data-skip")));
      if (b.hasAttribute("data-rate")) setRate(parseFloat(b.getAttribute("data-rate")));
    });
  }
  if (shortcuts) shortcuts.hidden = false;

  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("a.seek");
    if (!a) return;
    e.preventDefault();
    seek(parseFloat(a.getAttribute("data-t")) || 0);
    var p = audio.play();
    if (p && p.catch) p.catch(function () {});
    mark();
  });

  var envelope = document.querySelector("img.envelope");
  if (envelope) {
    envelope.addEventListener("click", function (e) {
      var box = envelope.getBoundingClientRect();
      if (isFinite(audio.duration) && box.width > 0) seek(audio.duration * (e.clientX - box.left) / box.width);
    });
  }

  audio.addEventListener("timeupdate", mark);
  audio.addEventListener("seeked", mark);
  audio.addEventListener("ratechange", function () {
    speeds.forEach(function (b) {
      b.setAttribute("aria-pressed", parseFloat(b.getAttribute("data-rate")) === audio.playbackRate ? "true" : "false");
    });
  });

  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey) return;
    var el = e.target;
    var tag = el && el.tagName ? el.tagName.toLowerCase() : "";
    if (tag === "input" || tag === "textarea" || tag === "select" || (el && el.isContentEditable)) return;
    switch (e.key) {
      case "k":
        toggle();
        break;
      case " ":
        // Space on a button or link is that control's own.
        if (tag === "button" || tag === "a" || tag === "audio") return;
        toggle();
        break;
      case "j":
        skip(-5);
        break;
      case "l":
        skip(5);
        break;
      case "[":
        stepRate(-1);
        break;
      case "]":
        stepRate(1);
        break;
      default:
        return;
    }
    e.preventDefault();
  });
})();
