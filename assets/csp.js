// Imported first by app.js: count Content-Security-Policy violations so they
// are visible (tests read data-csp-violations; people see an alert).
export const violations = [];

document.documentElement.dataset.cspViolations = "0";
document.addEventListener("securitypolicyviolation", (e) => {
  violations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
  document.documentElement.dataset.cspViolations = String(violations.length);
});
