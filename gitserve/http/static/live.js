// Live build log: Server-Sent Events from /builds/ID/events, appended as text (never HTML).
(function () {
  var log = document.getElementById("log");
  if (!log || log.dataset.live !== "yes") return;
  var url = "/builds/" + log.dataset.build + "/events?after=" + encodeURIComponent(log.dataset.after);
  var source = new EventSource(url);
  function add(text) {
    var span = document.createElement("span");
    span.className = "line";
    span.textContent = text;
    log.appendChild(span);
    log.appendChild(document.createTextNode("\n"));
  }
  source.onmessage = function (e) { add(e.data); };
  // the build ended: its duration replaces the "-" the page was rendered with
  source.addEventListener("duration", function (e) {
    document.getElementById("duration").textContent = e.data;
  });
  source.addEventListener("end", function (e) {
    var parts = e.data.split("\n");
    var status = document.getElementById("status");
    status.textContent = parts[0];
    status.className = "status " + parts[0].replace(/ /g, "-");
    document.getElementById("summary").textContent = parts.slice(1).join("\n");
    source.close();
  });
})();
