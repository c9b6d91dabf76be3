;;; cao.el --- Orchestrate AI coding agents with cao-sidecar  -*- lexical-binding: t; -*-

;; Copyright (C) 2025 cao-sidecar contributors

;; Author: cao-sidecar contributors
;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9") (jsonrpc "1.0.14"))
;; Keywords: tools, processes

;; This file is not part of GNU Emacs.

;;; Commentary:

;; Emacs client for cao-sidecar, which runs AI coding CLIs (Claude Code, Codex, Gemini CLI, ...)
;; as a team of agents, each in its own tmux window.  The sidecar speaks JSON-RPC with LSP framing
;; on stdio; this package starts one sidecar per project through eglot and talks to it with
;; jsonrpc.el.
;;
;; Commands (each starts the sidecar for the current project if it is not running yet):
;;
;;   `cao-start'         start the sidecar for the current project
;;   `cao-stop'          stop it (agents keep running in tmux)
;;   `cao-spawn'         start an agent from a profile
;;   `cao-handoff'       give a task to a new worker and show its answer
;;   `cao-assign'        give a task to a new worker in the background
;;   `cao-send-message'  send a message to an agent
;;   `cao-answer'        answer the question an agent waits on
;;   `cao-output'        show an agent's last answer (with C-u: its whole screen)
;;   `cao-attach'        open a terminal on an agent's tmux window
;;   `cao-terminate'     end an agent
;;   `cao-agents'        list the agents; the list follows their status live
;;   `cao-trust'         trust the project's .cao/ and .venv (`cao-untrust': stop trusting)
;;   `cao-worktrees'     workers' git worktrees: diff, merge, rebase, discard (cao-worktrees.el)
;;   `cao-workflow-run'  a workflow run; `cao-workflow-runs' lists them (cao-workflows.el)
;;
;; `cao-mode' is a global minor mode showing " CAO[3/1]" in the mode line: 3 agents, 1 of
;; them working.  When an agent asks a question, cao.el asks you in the minibuffer (see
;; `cao-answer-prompts'); when a background worker finishes, it says so in the echo area.
;;
;; Setup:
;;
;;   (add-to-list 'load-path "/path/to/cao-sidecar/clients/emacs")
;;   (require 'cao)
;;   (cao-mode 1)
;;   (global-set-key (kbd "C-c a") 'cao-command-map)

;;; Code:

(require 'cl-lib)
(require 'subr-x)
(require 'eglot)
(require 'jsonrpc)
(require 'project)
(require 'tabulated-list)
(require 'term)
(require 'cao-trust)

(defgroup cao nil
  "Orchestrate AI coding agents with cao-sidecar."
  :group 'tools
  :prefix "cao-")

(defcustom cao-sidecar-program nil
  "How to run cao-sidecar: a program, or a list (PROGRAM ARGS...).
nil: the project's .venv/bin/cao-sidecar if there is one and the
project is trusted (`cao-trust'), else cao-sidecar on the variable
`exec-path'.  The arguments --stdio and
--tmux-socket are added."
  :type '(choice (const :tag "Project .venv, else cao-sidecar on PATH" nil)
                 (string :tag "Program")
                 (repeat :tag "Program and arguments" string)))

(defcustom cao-sidecar-args nil
  "Extra command-line arguments for the sidecar, e.g. (\"--log-level\" \"debug\")."
  :type '(repeat string))

(defcustom cao-tmux-socket nil
  "Name of the sidecar's tmux socket (tmux -L NAME).
nil: one per project, \"cao-\" followed by the first 12 hex digits of
the SHA-256 of the project root's absolute path."
  :type '(choice (const :tag "One per project" nil) string))

(defcustom cao-default-provider nil
  "Provider (agent CLI) to run agents with; nil: each profile's own."
  :type '(choice (const :tag "The profile's" nil) string))

(defcustom cao-worker-worktree nil
  "Whether a new worker gets its own git worktree and branch.
New workers: spawn, handoff to a profile, assign.  nil: its profile's
`worktree' field decides; t: always; `never': never.
See `cao-worktrees' for its changes, merge and discard."
  :type '(choice (const :tag "As its profile says" nil) (const :tag "Always" t) (const :tag "Never" never)))

(defun cao--worktree-param ()
  "The `worktree' param of a new worker (nil: not sent).
From `cao-worker-worktree'."
  (pcase cao-worker-worktree ('never :json-false) ('nil nil) (_ t)))

(autoload 'cao-worktrees "cao-worktrees" "List the workers' open git worktrees." t)
(autoload 'cao-worktree-diff "cao-worktrees" "Show a worker's changes." t)
(autoload 'cao-worktree-merge "cao-worktrees" "Merge a worker's branch into its base." t)
(autoload 'cao-worktree-discard "cao-worktrees" "Discard a worker's work." t)
(autoload 'cao-workflow-run "cao-workflows" "Start a workflow run." t)
(autoload 'cao-workflow-resume "cao-workflows" "Go on with a workflow run." t)
(autoload 'cao-workflow-runs "cao-workflows" "List the workflow runs and their steps." t)

(defcustom cao-workflow-run-functions nil
  "Functions called with the params (a plist) of each cao/workflowRun notification.
That notification comes when a workflow run or one of its steps changes."
  :type 'hook)

(defcustom cao-handoff-timeout 600
  "Seconds a handoff may take (timeoutSeconds of cao/handoff)."
  :type 'number)

(defcustom cao-request-timeout 60
  "Seconds to wait for the answer to a short request (list, send, answer, ...)."
  :type 'number)

(defcustom cao-connect-timeout 30
  "Seconds to wait for the sidecar to start and answer `initialize'."
  :type 'number)

(defcustom cao-answer-prompts 'ask
  "What to do when an agent asks a question (status waiting_user_answer).
`ask': ask in the minibuffer at once (unless the minibuffer is in
use) and send the answer; `notify': only say so in the echo area
\(answer with \\[cao-answer] or in the agents list); nil: nothing."
  :type '(choice (const :tag "Ask in the minibuffer" ask)
                 (const :tag "Only tell" notify)
                 (const :tag "Nothing" nil)))

(defcustom cao-worker-completed-functions nil
  "Functions called with the params (a plist) of each cao/workerCompleted.
That notification comes when a worker started by `cao-assign' ends."
  :type 'hook)

(defcustom cao-agent-status-functions nil
  "Functions called with the params (a plist) of each cao/agentStatus notification."
  :type 'hook)

(defface cao-status-working '((t :inherit warning))
  "Face of the status of agents at work.")

(defface cao-status-waiting '((t :inherit error :weight bold))
  "Face of the status of agents that wait for an answer.")

(defface cao-status-stalled '((t :inherit warning :weight bold))
  "Face of the status of agents that work but showed nothing new for the stall time.")

(defface cao-status-done '((t :inherit success))
  "Face of the status of agents ready for input.")

(defface cao-status-gone '((t :inherit shadow))
  "Face of the status of agents that failed or exited.")


;;; The server class

(defclass cao-server (eglot-lsp-server)
  ((agents :initform (make-hash-table :test #'equal)
           :accessor cao--server-agents
           :documentation "terminalId -> plist (AgentInfo fields, updated by notifications).")
   (profiles :initform nil :accessor cao--server-profiles
             :documentation "The last list of profiles (vector of plists).")
   (asked :initform (make-hash-table :test #'equal) :accessor cao--server-asked
          :documentation "Prompt ids already put to the user.")
   (latest :initform (make-hash-table :test #'equal) :accessor cao--server-latest
           :documentation "terminalId -> (SEQ . PARAMS) of its last cao/agentStatus.")
   (seq :initform 0 :accessor cao--server-seq
        :documentation "How many cao/agentStatus notifications came so far.")
   (trust :initform nil :accessor cao--server-trust
          :documentation "TrustInfo plists of its folders (cao/getTrust, cao/trustChanged)."))
  :documentation "A cao-sidecar process serving one project.")

(defvar cao--servers (make-hash-table :test #'equal)
  "Project root (a directory name) -> its `cao-server'.")

(defvar cao--agents-list-changed-hook nil
  "Run after the agents of a server changed; mode line and agent lists follow it.")

(cl-defmethod eglot-initialization-options ((_server cao-server))
  "Initialization options: no questions through showMessageRequest.
cao.el puts the agents' questions to the user itself (see
`cao-answer-prompts')."
  (list :askUser :json-false))

(defun cao--normalize-root (dir)
  "DIR as an absolute directory name (with a trailing slash)."
  (file-name-as-directory (expand-file-name dir)))

(defun cao-project-root (&optional dir)
  "The root of the project of DIR (default: `default-directory'), or DIR itself."
  (let* ((dir (or dir default-directory))
         (project (project-current nil dir)))
    (cao--normalize-root (if project (project-root project) dir))))

(defun cao-default-tmux-socket (root)
  "The per-project tmux socket name for ROOT.
\"cao-\" and the first 12 hex digits of the SHA-256 of its path."
  (concat "cao-" (substring (secure-hash 'sha256
                                         (encode-coding-string
                                          (directory-file-name (expand-file-name root))
                                          'utf-8 t))
                            0 12)))

(defun cao-sidecar-command (root)
  "The program and arguments that start the sidecar for ROOT.
Without --stdio and the socket, which `cao--contact' adds."
  (let ((venv (expand-file-name ".venv/bin/cao-sidecar" root)))
    (cond ((stringp cao-sidecar-program) (list cao-sidecar-program))
          ((consp cao-sidecar-program) (copy-sequence cao-sidecar-program))
          ;; The project's own program is the project's code: only once it is trusted.
          ((and (file-executable-p venv) (cao-trust-p root)) (list venv))
          ((executable-find "cao-sidecar") (list (executable-find "cao-sidecar")))
          ((file-executable-p venv)
           (user-error "cao: cao-sidecar is not on `exec-path', and %s is not run because %s %s"
                       venv (abbreviate-file-name root)
                       "is not trusted; M-x cao-trust, or set `cao-sidecar-program'"))
          (t (user-error "cao: cannot find the program cao-sidecar; %s"
                         "install it or set `cao-sidecar-program'")))))

(defun cao--contact (root)
  "The command line of the sidecar for ROOT."
  (append (cao-sidecar-command root) cao-sidecar-args
          (list "--stdio" "--tmux-socket" (or cao-tmux-socket (cao-default-tmux-socket root)))))

(defun cao--live-p (server)
  "Non-nil if SERVER is a running connection."
  (and server (jsonrpc-running-p server)))

(defun cao--server-root (server)
  "The project root SERVER serves."
  (cao--normalize-root (project-root (eglot--project server))))

(defun cao--server-socket (server)
  "The tmux socket name SERVER was started with."
  (let ((command (process-command (jsonrpc--process server))))
    (cadr (member "--tmux-socket" command))))

(defun cao--live-servers ()
  "The running sidecars."
  (let (servers)
    (maphash (lambda (_root server) (when (cao--live-p server) (push server servers)))
             cao--servers)
    servers))

(defun cao--on-connect (server)
  "Register SERVER once eglot has connected it (also after a reconnection)."
  (when (cl-typep server 'cao-server)
    (puthash (cao--server-root server) server cao--servers)
    (cao--refresh-agents server)
    (cao--request-async server :cao/listProfiles (make-hash-table)
                        (lambda (result)
                          (setf (cao--server-profiles server) (plist-get result :profiles))))
    (when (cao--has-method-p server "cao/getTrust")
      (cao--request-async server :cao/getTrust (make-hash-table)
                          (lambda (result)
                            (setf (cao--server-trust server) (plist-get result :folders))
                            (run-hooks 'cao--agents-list-changed-hook))))))

(defun cao--has-method-p (server method)
  "Non-nil if SERVER announces METHOD (capabilities.experimental.cao.methods)."
  (let ((cao (plist-get (plist-get (eglot--capabilities server) :experimental) :cao)))
    (and (member method (append (plist-get cao :methods) nil)) t)))

(add-hook 'eglot-connect-hook #'cao--on-connect)

(defun cao--connect (root)
  "Start the sidecar for ROOT through eglot and wait until it is ready; return it."
  ;; Asked before the program is chosen: a trusted project's own .venv sidecar may run.
  (when (eq (cao-trust-maybe-ask root) 'trust)
    ;; A failure to record it (no cao-sidecar to run) is said, and the sidecar starts anyway.
    (condition-case err
        (cao--set-trust root t)
      (user-error (message "%s" (error-message-string err)))))
  (let* ((default-directory root)
         (project (or (project-current nil root) (cons 'transient root)))
         (contact (cao--contact root))
         (eglot-sync-connect t)
         (eglot-connect-timeout cao-connect-timeout)
         (server
          (with-temp-buffer
            (setq default-directory root)
            ;; `eglot' replaces the server of the current buffer's major mode in this project:
            ;; make that the (no-file) mode the sidecar is registered for.
            (setq major-mode 'cao-agents-mode)
            (condition-case err
                (eglot '(cao-agents-mode) project 'cao-server contact "cao")
              (error
               (user-error "cao: could not start %s: %s" (string-join contact " ")
                           (error-message-string err)))))))
    (unless (cao--live-p server)
      (user-error "cao: the sidecar did not start (see the *EGLOT ... stderr* buffer)"))
    (puthash root server cao--servers)
    (run-hooks 'cao--agents-list-changed-hook)
    server))

;;;###autoload
(defun cao-start (&optional root)
  "Start the sidecar for the project of the current buffer (or ROOT) and return it.
If it is already running, return the running one."
  (interactive)
  (let* ((root (if root (cao--normalize-root root) (cao-project-root)))
         (running (gethash root cao--servers)))
    (if (cao--live-p running)
        (progn (when (called-interactively-p 'interactive)
                 (message "cao: the sidecar for %s is running" (abbreviate-file-name root)))
               running)
      (let ((server (cao--connect root)))
        (when (called-interactively-p 'interactive)
          (message "cao: sidecar ready for %s" (abbreviate-file-name root)))
        server))))

(defun cao-stop (&optional server)
  "Stop SERVER (default: the current project's sidecar).
Agents keep running in tmux."
  (interactive)
  (let ((server (or server (cao--current-server))))
    (when (cao--live-p server)
      (let ((root (cao--server-root server)))
        ;; eglot's default of 1.5 s for the answer to `shutdown' is short for a sidecar that
        ;; saves its state on a loaded machine.
        (eglot-shutdown server nil 10)
        (remhash root cao--servers)))
    (run-hooks 'cao--agents-list-changed-hook)))

;;;###autoload
(defun cao-stop-all ()
  "Stop every sidecar started by cao.el.  Agents keep running in tmux."
  (interactive)
  (dolist (server (cao--live-servers))
    (ignore-errors (cao-stop server))))

(add-hook 'kill-emacs-hook #'cao-stop-all)

(defvar-local cao--buffer-server nil
  "The sidecar a cao buffer (agent list, output) belongs to.")

(defun cao--current-server ()
  "The sidecar of the current buffer or project, or nil if it is not running."
  (or (and (cao--live-p cao--buffer-server) cao--buffer-server)
      (let ((server (gethash (cao-project-root) cao--servers)))
        (and (cao--live-p server) server))))

(defun cao--server ()
  "The sidecar of the current buffer or project, started if need be."
  (or (cao--current-server) (cao-start)))


;;; Requests

(defun cao-request (method params &optional timeout server)
  "Send METHOD (a keyword like :cao/listAgents) with PARAMS; return the result.
Wait at most TIMEOUT seconds (default `cao-request-timeout').  SERVER
defaults to the current project's sidecar.  A failure is signalled as a
`user-error' with the sidecar's message."
  ;; Not `jsonrpc-request': it leaves the process filter with a throw, and messages that came
  ;; in the same read as the answer (e.g. a status notification) then wait for the next read.
  (let ((server (or server (cao--server)))
        (state nil) (value nil))
    (cao--request-async server method params
                        (lambda (result) (setq state 'done value result))
                        (lambda (text) (setq state 'error value text))
                        timeout)
    (while (not state)
      (unless (jsonrpc-running-p server)
        (setq state 'error value "the sidecar has exited"))
      (accept-process-output nil 0.05))
    (if (eq state 'error)
        (user-error "cao: %s" value)
      value)))

(defun cao--request-async (server method params on-success &optional on-error timeout)
  "Send METHOD with PARAMS to SERVER; call ON-SUCCESS with the result.
ON-ERROR gets the error message; by default it is shown in the echo area."
  (let ((on-error (or on-error (lambda (text) (message "cao: %s" text))))
        (timeout (or timeout cao-request-timeout)))
    (jsonrpc-async-request
     server method (or params (make-hash-table))
     :success-fn on-success
     :error-fn (lambda (err) (funcall on-error (or (plist-get err :message) (format "%S" err))))
     :timeout-fn (lambda ()
                   (funcall on-error (format "no answer to %s within %s s"
                                             (string-remove-prefix ":" (symbol-name method))
                                             timeout)))
     :timeout timeout)
    nil))

(defun cao--params (&rest plist)
  "PLIST without its nil values."
  (let (out)
    (while plist
      (when (cadr plist)
        (push (car plist) out)
        (push (cadr plist) out))
      (setq plist (cddr plist)))
    (or (nreverse out) (make-hash-table))))

(defun cao--first-line (text)
  "The first non-empty line of TEXT."
  (let ((lines (split-string (or text "") "\n" t "[ \t\r]+")))
    (or (car lines) "")))


;;; Agents and profiles

(defun cao--agent (server terminal-id)
  "What SERVER knows about TERMINAL-ID (a plist), or nil."
  (gethash terminal-id (cao--server-agents server)))

(defun cao--agents (server)
  "The agents SERVER knows, oldest first."
  (let (agents)
    (maphash (lambda (_id agent) (push agent agents)) (cao--server-agents server))
    (sort agents (lambda (a b) (string< (or (plist-get a :createdAt) "~")
                                        (or (plist-get b :createdAt) "~"))))))

(defun cao--set-agents (server agents since)
  "Replace SERVER's agents with AGENTS (a sequence of AgentInfo plists).
The list was asked for after SINCE status notifications: the ones that
came later may be newer than the list (its answer can arrive after
them), so their status wins."
  (let ((old (cao--server-agents server))
        (latest (cao--server-latest server))
        (table (make-hash-table :test #'equal)))
    (seq-doseq (agent agents)
      (let* ((id (plist-get agent :terminalId))
             (news (gethash id latest)))
        (when (and news (> (car news) since))
          (setq agent (plist-put (plist-put (copy-sequence agent)
                                            :status (plist-get (cdr news) :status))
                                 :prompt (plist-get (cdr news) :prompt))))
        (unless (equal (plist-get agent :status) "exited")
          (puthash id agent table))))
    ;; Agents first heard of after the list was made.
    (maphash (lambda (id news)
               (when (and (> (car news) since) (not (gethash id table)) (gethash id old))
                 (puthash id (gethash id old) table)))
             latest)
    (setf (cao--server-agents server) table))
  (run-hooks 'cao--agents-list-changed-hook))

(defun cao--refresh-agents (server &optional callback)
  "Ask SERVER for its agents; then update the lists and call CALLBACK."
  (when (cao--live-p server)
    (let ((since (cao--server-seq server)))
      (cao--request-async server :cao/listAgents (make-hash-table)
                          (lambda (result)
                            (cao--set-agents server (plist-get result :agents) since)
                            (when callback (funcall callback)))))))

(defun cao-list-agents (&optional server)
  "The agents of SERVER (default: the current project's), asked now."
  (let* ((server (or server (cao--server)))
         (since (cao--server-seq server))
         (result (cao-request :cao/listAgents nil nil server)))
    (cao--set-agents server (plist-get result :agents) since)
    (cao--agents server)))

(defun cao--profiles (server)
  "The profiles SERVER can start (asked now)."
  (let ((profiles (plist-get (cao-request :cao/listProfiles nil nil server) :profiles)))
    (setf (cao--server-profiles server) profiles)
    profiles))

(defun cao--read-profile (prompt)
  "Read a profile name with PROMPT, completing over the sidecar's profiles."
  (let* ((profiles (append (cao--profiles (cao--server)) nil))
         (names (mapcar (lambda (p) (plist-get p :name)) profiles))
         (completion-extra-properties
          (list :annotation-function
                (lambda (name)
                  (when-let ((p (cl-find name profiles :key (lambda (p) (plist-get p :name))
                                         :test #'equal)))
                    (format "  %s  %s%s" (plist-get p :provider) (plist-get p :description)
                            (if (eq (plist-get p :untrusted) t)
                                "  [untrusted: its settings are held back]"
                              "")))))))
    (completing-read prompt names nil t)))

(defun cao--agent-label (agent)
  "How AGENT is named in completions."
  (format "%s  %s  %s%s" (plist-get agent :terminalId) (plist-get agent :profile)
          (plist-get agent :status)
          (if-let ((name (plist-get agent :name))) (format "  (%s)" name) "")))

(defun cao--read-agent (prompt &optional predicate none)
  "Read an agent of the current sidecar with PROMPT; return its terminalId.
PREDICATE, if given, filters the agents offered; NONE is the error
message when no agent fits.  In the agents list, the agent at point."
  (or (and (derived-mode-p 'cao-agents-mode) (tabulated-list-get-id))
      (let* ((server (cao--server))
             (agents (cl-remove-if-not (or predicate #'identity) (cao-list-agents server)))
             (labels (mapcar (lambda (a) (cons (cao--agent-label a) (plist-get a :terminalId)))
                             agents)))
        (unless labels (user-error "cao: %s" (or none "no agent")))
        (cdr (assoc (completing-read prompt labels nil t nil nil (caar labels)) labels)))))


;;; Commands

(defun cao--output-buffer (server terminal-id &optional profile)
  "The buffer for the output of TERMINAL-ID (of PROFILE) on SERVER."
  (let* ((profile (or profile (plist-get (cao--agent server terminal-id) :profile)))
         (buffer (get-buffer-create (format "*cao: %s %s*" (or profile "agent") terminal-id))))
    (with-current-buffer buffer
      (unless (derived-mode-p 'special-mode) (special-mode))
      (setq cao--buffer-server server)
      (setq default-directory (cao--server-root server)))
    buffer))

(defun cao--show-output (server terminal-id text &optional profile)
  "Show TEXT, an output of TERMINAL-ID on SERVER, in its buffer."
  (let ((buffer (cao--output-buffer server terminal-id profile)))
    (with-current-buffer buffer
      (let ((inhibit-read-only t))
        (erase-buffer)
        (insert text)
        (unless (bolp) (insert "\n"))
        (goto-char (point-min))))
    (display-buffer buffer)
    buffer))

;;;###autoload
(defun cao-spawn (profile &optional callback)
  "Start an agent from PROFILE.
When it is ready, say so (and call CALLBACK with the cao/spawn result)."
  (interactive (list (cao--read-profile "Spawn agent (profile): ")))
  (let ((server (cao--server)))
    (message "cao: starting %s..." profile)
    (cao--request-async
     server :cao/spawn (cao--params :profile profile :provider cao-default-provider
                                    :worktree (cao--worktree-param))
     (lambda (result)
       (message "cao: %s %s is %s" profile (plist-get result :terminalId) (plist-get result :status))
       (when callback (funcall callback result)))
     nil 120)))

(defun cao--handoff (server params callback)
  "Send cao/handoff with PARAMS to SERVER and show the answer.
CALLBACK, if non-nil, gets the result."
  (let ((who (or (plist-get params :profile) (plist-get params :terminalId))))
    (message "cao: %s is working on it..." who)
    (cao--request-async
     server :cao/handoff (append params (list :timeoutSeconds cao-handoff-timeout))
     (lambda (result)
       (let ((output (or (plist-get result :output) ""))
             (profile (or (plist-get params :profile)
                          (plist-get (cao--agent server (plist-get params :terminalId)) :profile))))
         (cao--show-output server (plist-get result :terminalId) output profile)
         (message "cao: %s answered: %s%s" who (cao--first-line output)
                  (if-let ((worktree (plist-get result :worktree)))
                      (format "; its work is on %s (M-x cao-worktrees)" (plist-get worktree :branch))
                    ""))
         (when callback (funcall callback result))))
     nil (+ cao-handoff-timeout 30))))

;;;###autoload
(defun cao-handoff (profile message &optional callback)
  "Give MESSAGE to a new worker from PROFILE, wait for its answer and show it.
The wait does not block Emacs; CALLBACK, if given, gets the cao/handoff result."
  (interactive (list (cao--read-profile "Hand off to (profile): ")
                     (read-string "Task: ")))
  (cao--handoff (cao--server)
                (cao--params :profile profile :message message :provider cao-default-provider
                             :worktree (cao--worktree-param))
                callback))

(defun cao-handoff-to-agent (terminal-id message &optional callback)
  "Give MESSAGE to the existing agent TERMINAL-ID, wait for its answer and show it."
  (interactive (list (cao--read-agent "Hand off to agent: ") (read-string "Task: ")))
  (cao--handoff (cao--server) (list :terminalId terminal-id :message message) callback))

;;;###autoload
(defun cao-assign (profile message)
  "Start a worker from PROFILE on MESSAGE in the background; return its terminalId.
You are told in the echo area when it has finished."
  (interactive (list (cao--read-profile "Assign to (profile): ")
                     (read-string "Task: ")))
  (let* ((result (cao-request :cao/assign
                              (cao--params :profile profile :message message
                                           :provider cao-default-provider
                                           :worktree (cao--worktree-param))))
         (terminal-id (plist-get result :terminalId)))
    (message "cao: assigned to %s %s" profile terminal-id)
    terminal-id))

(defun cao-send-message (terminal-id message)
  "Send MESSAGE to the agent TERMINAL-ID."
  (interactive (list (cao--read-agent "Send to agent: ") (read-string "Message: ")))
  (let ((result (cao-request :cao/sendMessage (list :terminalId terminal-id :message message))))
    (message "cao: message to %s %s" terminal-id (plist-get result :state))
    result))

(defun cao--waiting-p (agent)
  "Non-nil if AGENT waits for an answer."
  (equal (plist-get agent :status) "waiting_user_answer"))

(defun cao--read-answer (agent prompt)
  "Ask the user for the answer to PROMPT (a plist) of AGENT.
Return nil when the answer is empty.  There is no default answer: a
stray RET must not say yes."
  (let* ((choices (append (plist-get prompt :choices) nil))
         (question (format "%s (%s) asks: %s%s " (plist-get agent :profile)
                           (plist-get agent :terminalId)
                           (or (plist-get prompt :text) "?")
                           (if choices (format " [%s]" (string-join choices "/")) "")))
         (answer (if choices
                     (completing-read question choices nil nil)
                   (read-string question))))
    (unless (string-empty-p (string-trim answer)) answer)))

(defun cao-answer (terminal-id answer &optional prompt-id)
  "Answer the question the agent TERMINAL-ID waits on with ANSWER.
PROMPT-ID, if given, names the question: an answer to a question
already answered is refused."
  (interactive
   (let* ((terminal-id (cao--read-agent "Answer agent: " #'cao--waiting-p
                                        "no agent waits for an answer"))
          (server (cao--server))
          (agent (cao--agent server terminal-id))
          (prompt (plist-get agent :prompt)))
     (unless (cao--waiting-p agent)
       (user-error "cao: %s does not wait for an answer" terminal-id))
     (list terminal-id
           (or (cao--read-answer agent (or prompt '(:text "?")))
               (user-error "cao: no answer given"))
           (plist-get prompt :id))))
  (let ((result (cao-request :cao/answer (cao--params :terminalId terminal-id :answer answer
                                                      :promptId prompt-id))))
    (message "cao: answered %s: %s" terminal-id answer)
    result))

(defun cao-output (terminal-id &optional full)
  "Show the last answer of the agent TERMINAL-ID.
With FULL (prefix arg), its whole screen."
  (interactive (list (cao--read-agent "Output of agent: ") current-prefix-arg))
  (let* ((server (cao--server))
         (result (cao-request :cao/getOutput (list :terminalId terminal-id
                                                   :mode (if full "full" "last")))))
    (cao--show-output server terminal-id (plist-get result :output))))

(defun cao--open-terminal (terminal-id argv)
  "Run ARGV (a list of strings) in a terminal buffer for TERMINAL-ID and show it."
  (let ((buffer (apply #'make-term (format "cao: attach %s" terminal-id) (car argv) nil (cdr argv))))
    (with-current-buffer buffer
      (term-char-mode))
    (pop-to-buffer buffer)
    buffer))

(defun cao--attach-command (server terminal-id)
  "The command line showing the tmux window of TERMINAL-ID on SERVER."
  (let ((agent (cao--agent server terminal-id)))
    (unless (plist-get agent :attachCommand)
      (cao-list-agents server)
      (setq agent (cao--agent server terminal-id)))
    (unless agent (user-error "cao: no agent %s" terminal-id))
    (or (append (plist-get agent :attachCommand) nil)
        (list "tmux" "-L" (cao--server-socket server) "attach-session"
              "-t" (format "%s:%s-%s" (plist-get agent :session)
                           (plist-get agent :profile) terminal-id)))))

(defun cao-attach (terminal-id)
  "Open a terminal on the tmux window of the agent TERMINAL-ID."
  (interactive (list (cao--read-agent "Attach to agent: ")))
  (let ((server (cao--server)))
    (cao--open-terminal terminal-id (cao--attach-command server terminal-id))))

(defun cao-terminate (terminal-id)
  "End the agent TERMINAL-ID: ask its CLI to exit, then remove its window."
  (interactive (let ((id (cao--read-agent "Terminate agent: ")))
                 (unless (y-or-n-p (format "Terminate agent %s? " id)) (user-error "Cancelled"))
                 (list id)))
  (let ((server (cao--server)))
    (cao--request-async server :cao/terminate (list :terminalId terminal-id)
                        (lambda (_result) (message "cao: terminated %s" terminal-id)))))


;;; Notifications

(defun cao--update-agent (server params)
  "Merge an agentStatus PARAMS into SERVER's table; return the agent."
  (let* ((table (cao--server-agents server))
         (id (plist-get params :terminalId))
         (agent (gethash id table)))
    (puthash id (cons (cl-incf (cao--server-seq server)) params) (cao--server-latest server))
    (if (equal (plist-get params :status) "exited")
        (progn (remhash id table) nil)
      (unless agent
        ;; A new agent: its other fields (working directory, name) come with the next list.
        (run-with-timer 0.2 nil #'cao--refresh-agents server))
      (dolist (key '(:terminalId :profile :status :session :prompt))
        (setq agent (plist-put agent key (plist-get params key))))
      (puthash id agent table)
      agent)))

(cl-defmethod eglot-handle-notification
  ((server cao-server) (_method (eql 'cao/agentStatus)) &rest params &key &allow-other-keys)
  "Handle cao/agentStatus from SERVER: an agent's status changed.
PARAMS are the notification's."
  (let ((agent (cao--update-agent server params))
        (prompt (plist-get params :prompt)))
    (run-hooks 'cao--agents-list-changed-hook)
    (when (and agent (equal (plist-get params :status) "stalled"))
      (message "cao: %s (%s) is stalled: no output or events for a while"
               (plist-get agent :profile) (plist-get agent :terminalId)))
    (when (and agent prompt (cao--waiting-p agent) cao-answer-prompts
               (not (gethash (plist-get prompt :id) (cao--server-asked server))))
      (puthash (plist-get prompt :id) t (cao--server-asked server))
      (if (eq cao-answer-prompts 'ask)
          (run-with-timer 0 nil #'cao--ask-prompt server (plist-get params :terminalId)
                          (plist-get prompt :id))
        (message "cao: %s (%s) asks: %s  (M-x cao-answer)" (plist-get agent :profile)
                 (plist-get agent :terminalId) (plist-get prompt :text))))
    (run-hook-with-args 'cao-agent-status-functions params)))

(defun cao--ask-prompt (server terminal-id prompt-id)
  "Ask the user question PROMPT-ID of TERMINAL-ID; send the answer to SERVER."
  (let* ((agent (cao--agent server terminal-id))
         (prompt (plist-get agent :prompt)))
    (when (and (cao--live-p server) (cao--waiting-p agent)
               (equal (plist-get prompt :id) prompt-id))
      (if (active-minibuffer-window)
          (message "cao: %s (%s) asks: %s  (M-x cao-answer)" (plist-get agent :profile)
                   terminal-id (plist-get prompt :text))
        (let ((answer (condition-case nil
                          ;; Timers run with quitting inhibited: let C-g decline.
                          (let ((inhibit-quit nil)) (cao--read-answer agent prompt))
                          (quit nil))))
          (if (not answer)
              (message "cao: not answered; M-x cao-answer to answer %s later" terminal-id)
            (cao--request-async
             server :cao/answer (list :terminalId terminal-id :answer answer :promptId prompt-id)
             (lambda (_result) (message "cao: answered %s: %s" terminal-id answer)))))))))

(cl-defmethod eglot-handle-notification
  ((_server cao-server) (_method (eql 'cao/workerCompleted)) &rest params &key &allow-other-keys)
  "Handle cao/workerCompleted with PARAMS.
A worker started by cao/assign has finished."
  (let ((profile (plist-get params :profile))
        (terminal-id (plist-get params :terminalId))
        (error-text (plist-get params :error)))
    (if error-text
        (message "cao: %s %s failed: %s" profile terminal-id error-text)
      (message "cao: %s %s finished: %s%s" profile terminal-id
               (cao--first-line (plist-get params :output))
               (if-let ((worktree (plist-get params :worktree)))
                   (format "; its work is on %s (M-x cao-worktrees: diff, merge, discard)"
                           (plist-get worktree :branch))
                 "")))
    (run-hook-with-args 'cao-worker-completed-functions params)))

(defvar cao--workflow-run-status (make-hash-table :test #'equal)
  "Run id -> the status last seen in a cao/workflowRun notification.")

(cl-defmethod eglot-handle-notification
  ((_server cao-server) (_method (eql 'cao/workflowRun)) &rest params &key &allow-other-keys)
  "Handle cao/workflowRun with PARAMS: say when a workflow run ends."
  (let* ((run-id (plist-get params :runId))
         (status (plist-get params :status))
         (before (gethash run-id cao--workflow-run-status)))
    (puthash run-id status cao--workflow-run-status)
    (when (and (member status '("completed" "failed" "interrupted")) (not (equal before status)))
      (message "cao: workflow %s (run %s) %s%s" (plist-get params :name) run-id status
               (if (plist-get params :error) (format ": %s" (plist-get params :error)) "")))
    (run-hook-with-args 'cao-workflow-run-functions params)))

(cl-defmethod eglot-handle-notification
  ((server cao-server) (_method (eql 'cao/profilesChanged)) &key profiles &allow-other-keys)
  "Handle cao/profilesChanged from SERVER: PROFILES are now in force."
  (setf (cao--server-profiles server) profiles))

(cl-defmethod eglot-handle-notification
  ((_server cao-server) (_method (eql 'cao/flowsChanged)) &rest _params)
  "Flows changed (not shown by cao.el).")

(cl-defmethod eglot-handle-notification
  ((_server cao-server) (_method (eql 'cao/openTerminal)) &key terminalId attachCommand
   &allow-other-keys)
  "Handle cao/openTerminal: show TERMINALID's window by running ATTACHCOMMAND."
  (run-with-timer 0 nil #'cao--open-terminal terminalId (append attachCommand nil)))


;;; Workspace trust

(defun cao--trust-cli-program ()
  "How to run `cao-sidecar trust'.
`cao-sidecar-program', else cao-sidecar on `exec-path'; never the
project's own .venv program."
  (cond ((stringp cao-sidecar-program) (list cao-sidecar-program))
        ((consp cao-sidecar-program) (copy-sequence cao-sidecar-program))
        ((executable-find "cao-sidecar") (list (executable-find "cao-sidecar")))
        (t (user-error "cao: cannot change trust: no sidecar runs for this project and %s"
                       "cao-sidecar is not on `exec-path'"))))

(defun cao--set-trust (root trusted)
  "Trust ROOT (TRUSTED non-nil) or stop trusting it, in the user's store.
Through ROOT's running sidecar (cao/setTrust) if it has that method,
else with `cao-sidecar trust'.  Return how: `sidecar' or `cli'."
  (let* ((root (cao--normalize-root root))
         (server (gethash root cao--servers))
         (via (if (and (cao--live-p server) (cao--has-method-p server "cao/setTrust"))
                  (let ((result (cao-request :cao/setTrust
                                             (list :trusted (if trusted t :json-false)
                                                   :path (directory-file-name root) :persist t)
                                             nil server)))
                    (setf (cao--server-trust server) (plist-get result :folders))
                    'sidecar)
                (cao-trust-run-cli (cao--trust-cli-program) root trusted)
                'cli)))
    (run-hooks 'cao--agents-list-changed-hook)
    (message "cao: %s is %s" (abbreviate-file-name (directory-file-name root))
             (if trusted "trusted" "no longer trusted"))
    via))

;;;###autoload
(defun cao-trust (&optional root)
  "Trust the current project (or ROOT; with a prefix argument, asked).
Its .cao/ (profiles, flows, providers) and its own .venv/bin/cao-sidecar
are then in force.  Kept in the user's trust store."
  (interactive (list (and current-prefix-arg (read-directory-name "Trust folder: "))))
  (cao--set-trust (or root (cao-project-root)) t))

;;;###autoload
(defun cao-untrust (&optional root)
  "Stop trusting the current project (or ROOT; with a prefix argument, asked)."
  (interactive (list (and current-prefix-arg (read-directory-name "Stop trusting folder: "))))
  (cao--set-trust (or root (cao-project-root)) nil))

(cl-defmethod eglot-handle-notification
  ((server cao-server) (_method (eql 'cao/trustChanged)) &key folders &allow-other-keys)
  "Handle cao/trustChanged from SERVER: FOLDERS' trust now."
  (let ((changes (cao-trust-changes (cao--server-trust server) folders)))
    (setf (cao--server-trust server) folders)
    (dolist (info changes)
      (message "%s" (cao-trust-describe-change info)))
    (run-hooks 'cao--agents-list-changed-hook)))


;;; Agent list

(defvar cao-agents-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "RET") #'cao-output)
    (define-key map "o" #'cao-output)
    (define-key map "a" #'cao-attach)
    (define-key map "s" #'cao-send-message)
    (define-key map "h" #'cao-handoff-to-agent)
    (define-key map "r" #'cao-answer)
    (define-key map "k" #'cao-terminate)
    (define-key map "+" #'cao-spawn)
    (define-key map "A" #'cao-assign)
    map)
  "Keys of the agents list.")

(defun cao--status-face (status)
  "The face for STATUS."
  (pcase status
    ((or "processing" "starting") 'cao-status-working)
    ("waiting_user_answer" 'cao-status-waiting)
    ("stalled" 'cao-status-stalled)
    ((or "idle" "completed") 'cao-status-done)
    (_ 'cao-status-gone)))

(defun cao--agents-entries ()
  "`tabulated-list-entries' of the agents list."
  (when (cao--live-p cao--buffer-server)
    (mapcar (lambda (agent)
              (let ((status (or (plist-get agent :status) "")))
                (list (plist-get agent :terminalId)
                      (vector (plist-get agent :terminalId)
                              (or (plist-get agent :profile) "")
                              (propertize status 'face (cao--status-face status))
                              (or (plist-get agent :name) "")
                              (if-let ((prompt (plist-get agent :prompt)))
                                  (format "asks: %s %s" (plist-get prompt :text)
                                          (mapconcat #'identity (plist-get prompt :choices) "/"))
                                (abbreviate-file-name (or (plist-get agent :workingDirectory) "")))))))
            (cao--agents cao--buffer-server))))

(define-derived-mode cao-agents-mode tabulated-list-mode "CAO Agents"
  "The agents of a cao-sidecar, updated as their status changes.
\\{cao-agents-mode-map}"
  (setq tabulated-list-format [("Id" 10 t) ("Profile" 18 t) ("Status" 20 t) ("Name" 12 t)
                               ("Question / directory" 0 nil)])
  (setq tabulated-list-entries #'cao--agents-entries)
  (setq tabulated-list-padding 1)
  (add-hook 'tabulated-list-revert-hook #'cao--agents-revert nil t)
  (tabulated-list-init-header))

(defun cao--agents-revert ()
  "Ask the sidecar for its agents again (g in the agents list)."
  (when (cao--live-p cao--buffer-server)
    (cao--refresh-agents cao--buffer-server)))

(defun cao--agents-redisplay ()
  "Redraw the agent lists and the mode line."
  (dolist (buffer (buffer-list))
    (with-current-buffer buffer
      (when (derived-mode-p 'cao-agents-mode)
        (tabulated-list-print t))))
  (force-mode-line-update t))

(add-hook 'cao--agents-list-changed-hook #'cao--agents-redisplay)

;;;###autoload
(defun cao-agents ()
  "Show the agents of the current project's sidecar."
  (interactive)
  (let* ((server (cao--server))
         (root (cao--server-root server))
         (buffer (get-buffer-create
                  (format "*cao agents: %s*" (file-name-nondirectory (directory-file-name root))))))
    (with-current-buffer buffer
      (unless (derived-mode-p 'cao-agents-mode) (cao-agents-mode))
      (setq cao--buffer-server server)
      (setq default-directory root)
      (tabulated-list-print t))
    (cao--refresh-agents server)
    (pop-to-buffer buffer)
    buffer))


;;; Mode line and keys

(defun cao-mode-line-text ()
  "The mode-line text: \" CAO[AGENTS/WORKING]\".
With \" ?N\" added when N agents wait for an answer, \" stalled:N\" when N
agents work but showed nothing new for the stall time, and \" untrusted\"
while a sidecar holds back an untrusted project's .cao/."
  (let ((total 0) (working 0) (waiting 0) (stalled 0) (servers (cao--live-servers)))
    (dolist (server servers)
      (maphash (lambda (_id agent)
                 (cl-incf total)
                 (pcase (plist-get agent :status)
                   ((or "processing" "starting") (cl-incf working))
                   ("waiting_user_answer" (cl-incf waiting))
                   ("stalled" (cl-incf stalled) (cl-incf working))))
               (cao--server-agents server)))
    (concat (cond ((null servers) " CAO")
                  ((> waiting 0) (format " CAO[%d/%d ?%d]" total working waiting))
                  (t (format " CAO[%d/%d]" total working)))
            (if (> stalled 0) (format " stalled:%d" stalled) "")
            (if (cl-some (lambda (server) (cao-trust-untrusted-config-p (cao--server-trust server)))
                         servers)
                " untrusted"
              ""))))

(defvar cao-command-map
  (let ((map (make-sparse-keymap)))
    (define-key map "S" #'cao-start)
    (define-key map "s" #'cao-spawn)
    (define-key map "h" #'cao-handoff)
    (define-key map "a" #'cao-assign)
    (define-key map "m" #'cao-send-message)
    (define-key map "r" #'cao-answer)
    (define-key map "o" #'cao-output)
    (define-key map "t" #'cao-attach)
    (define-key map "k" #'cao-terminate)
    (define-key map "l" #'cao-agents)
    (define-key map "T" #'cao-trust)
    (define-key map "w" #'cao-worktrees)
    map)
  "Keys for the cao commands; bind it to a prefix key.")
(fset 'cao-command-map cao-command-map)

;;;###autoload
(define-minor-mode cao-mode
  "Show the cao-sidecar agents in the mode line.
\" CAO[3/1]\" is 3 agents, 1 of them working."
  :global t
  :lighter (:eval (cao-mode-line-text)))

(provide 'cao)
;;; cao.el ends here
