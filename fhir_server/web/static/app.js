// The little the app needs from script: in a triage card, list only the chosen region's health trusts.
// Everything works without it (the server refuses a trust of another region).
document.addEventListener("DOMContentLoaded", () => {
  for (const region of document.querySelectorAll("select[data-trusts]")) {
    const trusts = document.getElementById(region.dataset.trusts);
    if (!trusts) continue;
    const sync = () => {
      for (const option of trusts.options) {
        const other = option.dataset.region && option.dataset.region !== region.value;
        option.hidden = other;
        option.disabled = other;
        if (other && option.selected) trusts.value = "";
      }
    };
    region.addEventListener("change", sync);
    sync();
  }
});
