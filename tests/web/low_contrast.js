() => {
    const rgb = (c) => c.match(/[\d.]+/g).map(Number);
    const lum = ([r, g, b]) => {
        const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const backdrop = (el) => {  // translucent layers blended over the first opaque one
        const layers = [];
        for (let e = el; e; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            const alpha = c.length < 4 ? 1 : c[3];
            if (alpha > 0) layers.push([c.slice(0, 3), alpha]);
            if (alpha === 1) break;
        }
        let colour = [255, 255, 255];
        for (const [c, alpha] of layers.reverse()) colour = colour.map((v, i) => v * (1 - alpha) + c[i] * alpha);
        return colour;
    };
    const bad = [];
    for (const el of document.querySelectorAll("body *")) {
        if (!el.checkVisibility || !el.checkVisibility()) continue;
        if (el.closest(":disabled, [aria-hidden=true], svg")) continue;
        if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
        const style = getComputedStyle(el);
        const [a, b] = [lum(rgb(style.color)), lum(backdrop(el))].sort((x, y) => y - x);
        const ratio = (a + 0.05) / (b + 0.05);
        const size = parseFloat(style.fontSize);
        const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
        if (ratio < (large ? 3 : 4.5)) bad.push(`${el.tagName}.${el.className} ${ratio.toFixed(2)}: ${el.textContent.trim().slice(0, 40)}`);
    }
    return bad;
}
