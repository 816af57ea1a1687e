// The password page's Print button (no inline script under the console's CSP).
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("print-letter");
  if (button) {
    button.addEventListener("click", function () { window.print(); });
  }
});
