// The stand-in's answer to a push: 200 with the request's apns-id, once the body
// has been read whole (js_content reads it before calling this), as APNs does.
function push(r) {
    const id = r.headersIn["apns-id"];
    if (id) {
        r.headersOut["apns-id"] = id;
    }
    r.return(200);
}

export default { push };
