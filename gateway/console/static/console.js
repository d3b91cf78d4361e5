// VerA Gateway console: the only script (no inline scripts; CSP script-src 'self').
// 1. Pages with data-refresh reload themselves every N seconds while nobody is typing in a form.
// 2. Forms with data-confirm ask before they submit (the server also requires the confirmation box).
"use strict";
(function () {
  var body = document.body;
  var seconds = parseInt(body.getAttribute("data-refresh") || "0", 10);
  if (seconds > 0) {
    window.setInterval(function () {
      var active = document.activeElement;
      var typing = active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA" || active.tagName === "SELECT");
      if (!typing && document.visibilityState === "visible") {
        window.location.reload();
      }
    }, seconds * 1000);
  }
  var forms = document.querySelectorAll("form[data-confirm]");
  for (var i = 0; i < forms.length; i++) {
    forms[i].addEventListener("submit", function (event) {
      if (!window.confirm(this.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  }
})();
