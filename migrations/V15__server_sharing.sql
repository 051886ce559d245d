-- Servers an administrator shared: who besides its owner may use a server through the
-- MCP gateway (`{"everyone": bool, "users": [user id, ...]}`; `{}` is nobody).

ALTER TABLE servers ADD COLUMN sharing jsonb NOT NULL DEFAULT '{}';
