const list = document.getElementById("status");
const source = new EventSource("/api/events");
source.addEventListener("status", (e) => {
  const ev = JSON.parse(e.data);
  const li = document.createElement("li");
  li.textContent = `${ev.timestamp} ${ev.message}`;
  list.prepend(li);
});
