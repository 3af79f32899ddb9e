// The gateway's page: the seed's RealtimeNotifications component, without a build step.
// Imported by path, not through an inline import map: the page's Content-Security-Policy
// allows scripts of this origin only (no inline script).
import { createApp, ref, reactive, computed } from "/vendor/vue.js";
import { io } from "/vendor/socket.io.js";

createApp({
  setup() {
    const socket = ref(null);
    const connected = ref(false);
    const connectionError = ref(null);
    const socketId = ref("");
    const transport = ref("");
    // Connection state recovery: the last reconnection got the session back (same socket
    // id, rooms, and every event missed meanwhile), "" before any reconnection.
    const recovery = ref("");
    let connects = 0;
    const userId = ref("");
    const notifications = reactive([]);
    const onlineUsers = reactive([]);
    const messages = reactive([]);
    const rooms = reactive([]);
    const errors = reactive([]);
    const lastMusic = ref("");
    const loginUser = ref(new URLSearchParams(location.search).get("user") || "");
    const loginName = ref("");
    const token = ref("");
    const needToken = ref(false);
    const pmTarget = ref("");
    const pmText = ref("");
    const roomName = ref("");
    const songId = ref("song-1");
    const position = ref(0);
    const musicRoom = ref("");
    let counter = 0;

    const recentNotifications = computed(() => notifications.slice(-10).reverse());
    const formatTime = (ts) => (ts ? new Date(ts).toLocaleTimeString() : "");

    async function fetchDevToken() {
      const res = await fetch("/api/dev/token", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ userId: loginUser.value, username: loginName.value || loginUser.value }),
      });
      if (res.status === 404) { needToken.value = true; return null; }
      const body = await res.json();
      if (!res.ok) throw new Error(body.error || res.statusText);
      return body.token;
    }

    async function signIn() {
      connectionError.value = null;
      try {
        const jwt = token.value || (await fetchDevToken());
        if (!jwt) { connectionError.value = "Paste a token to connect"; return; }
        connect(jwt);
      } catch (err) {
        connectionError.value = String(err.message || err);
      }
    }

    function connect(jwt) {
      connects = 0;
      recovery.value = "";
      const s = io("/", { auth: { token: jwt }, transports: ["websocket", "polling"] });
      socket.value = s;
      s.on("connect", () => {
        connected.value = true;
        connectionError.value = null;
        socketId.value = s.id;
        if (++connects > 1) recovery.value = s.recovered ? "recovered" : "new session";
        transport.value = s.io.engine.transport.name;
        s.io.engine.on("upgrade", (t) => { transport.value = t.name; });
      });
      // The gateway says why before it disconnects (token-expired); a disconnect by the
      // server is final (the client does not reconnect): back to the sign-in form.
      let endedBecause = null;
      s.on("token-expired", (e) => { endedBecause = e.message || "Session expired"; });
      s.on("disconnect", (reason) => {
        connected.value = false;
        if (reason === "io server disconnect") {
          connectionError.value = endedBecause || "Disconnected by the server";
          s.close();
          socket.value = null;
          rooms.splice(0);
          onlineUsers.splice(0);
        }
      });
      s.on("connect_error", (err) => { connectionError.value = err.message; });
      s.on("connected", (data) => { userId.value = data.userId; });
      s.on("notification", (n) => notifications.push({ ...n, key: ++counter }));
      s.on("user-online", ({ userId: id }) => { if (!onlineUsers.includes(id)) onlineUsers.push(id); });
      s.on("user-offline", ({ userId: id }) => {
        const i = onlineUsers.indexOf(id);
        if (i > -1) onlineUsers.splice(i, 1);
      });
      s.on("private-message", (m, ack) => {
        if (!messages.some((x) => x.id === m.id)) messages.push({ ...m, direction: "in" });
        if (typeof ack === "function") ack({ received: true }); // lets the gateway delete it
      });
      s.on("message-sent", (m) => messages.push({ ...m, direction: "out" }));
      s.on("joined-room", ({ room }) => { if (!rooms.includes(room)) rooms.push(room); });
      s.on("left-room", ({ room }) => {
        const i = rooms.indexOf(room);
        if (i > -1) rooms.splice(i, 1);
      });
      s.on("music-sync", (d) => {
        lastMusic.value = `${d.userId}: ${d.action} ${d.songId} at ${d.currentTime ?? 0}s`;
      });
      s.on("music-state", (d) => {
        lastMusic.value = `${d.room}: ${d.songId} ${d.playing ? "playing" : "paused"} at ${d.currentTime}s`;
      });
      s.on("error", (e) => errors.push(`${e.event}: ${e.message}`));
      s.on("rate-limit-exceeded", (e) => errors.push(`rate limit on ${e.event} (${e.limit}/min)`));
    }

    function sendMessage() {
      socket.value.emit("private-message", { targetUserId: pmTarget.value, message: pmText.value },
        (res) => { if (!res.success) errors.push(`private-message: ${res.error}`); });
      pmText.value = "";
    }
    function joinRoom() {
      socket.value.emit("join-room", { room: roomName.value },
        (res) => { if (!res.success) errors.push(`join-room: ${res.error}`); });
      roomName.value = "";
    }
    function leaveRoom(room) { socket.value.emit("leave-room", { room }); }
    function music(action) {
      const data = { action, songId: songId.value, currentTime: Number(position.value) || 0 };
      if (musicRoom.value) data.room = musicRoom.value;
      socket.value.emit("music-sync", data,
        (res) => { if (!res.success) errors.push(`music-sync: ${res.error}`); });
    }

    return {
      socket, connected, connectionError, socketId, transport, recovery, userId,
      recentNotifications,
      onlineUsers, messages, rooms, errors, lastMusic, loginUser, loginName, token, needToken,
      pmTarget, pmText, roomName, songId, position, musicRoom, formatTime, signIn, sendMessage,
      joinRoom, leaveRoom, music,
    };
  },
}).mount("#app");
