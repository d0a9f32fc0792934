// pkid admin page: progressive enhancement only. Every page works without
// this script; it adds copy buttons for a freshly minted token and for PEM
// text. Served from 'self', as the Content-Security-Policy requires.
(function () {
  'use strict';

  function textOf(el) {
    return el.tagName === 'TEXTAREA' || el.tagName === 'INPUT' ? el.value : el.textContent;
  }

  function say(button, message) {
    var status = button.nextElementSibling;
    if (status && status.classList.contains('copy-status')) {
      status.textContent = message;
    }
  }

  function copy(button) {
    var target = document.getElementById(button.getAttribute('data-copy'));
    if (!target) {
      return;
    }
    var text = textOf(target);
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () {
        say(button, 'Copied.');
      }, function () {
        say(button, 'Copy failed: select the text and copy it.');
      });
      return;
    }
    // Plain-HTTP development servers have no Clipboard API: select the text
    // so that one keystroke copies it.
    if (target.select) {
      target.select();
    } else {
      var range = document.createRange();
      range.selectNodeContents(target);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    }
    say(button, 'Selected: press Ctrl+C (⌘C) to copy.');
  }

  document.addEventListener('DOMContentLoaded', function () {
    var buttons = document.querySelectorAll('button[data-copy]');
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].hidden = false;
      buttons[i].addEventListener('click', function (ev) {
        copy(ev.currentTarget);
      });
    }
  });
}());
