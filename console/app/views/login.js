// Logging in: email and password for the HttpOnly session cookie (`"cookie": true`); the page
// never sees a token. Wrong credentials, a locked-out address and a server that does not answer
// each get their own Swedish message.

import { ApiError, get, post } from '../api.js';
import { field, h } from '../dom.js';

export function loginPage(main, { message, onLoggedIn }) {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const status = h('p', { class: 'form-error', role: 'alert', 'data-testid': 'login-error' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Logga in');
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'login-title', novalidate: true },
    h('h1', { id: 'login-title' }, 'Logga in'),
    message ? h('p', { class: 'notice info', 'data-testid': 'login-message' }, message) : null,
    field('E-postadress', email),
    field('Lösenord', password),
    status,
    button);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    status.textContent = '';
    if (!email.value.trim() || !password.value) {
      status.textContent = 'Fyll i e-postadress och lösenord.';
      return;
    }
    button.disabled = true;
    try {
      await post('auth/login', { email: email.value.trim(), password: password.value, cookie: true });
      onLoggedIn(await get('auth/me'));
    } catch (error) {
      status.textContent = loginError(error);
      password.value = '';
      password.focus();
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
  email.focus();
}

function loginError(error) {
  if (!(error instanceof ApiError)) return 'Inloggningen misslyckades.';
  if (error.status === 401) return 'Fel e-postadress eller lösenord (eller så är kontot avstängt).';
  if (error.status === 429 || error.status === 503) {
    const wait = error.details?.retry_after_secs;
    return `För många inloggningsförsök. Försök igen${wait ? ` om ${wait} sekunder` : ' senare'}.`;
  }
  if (error.status === 0) return error.message;
  return 'Inloggningen misslyckades.';
}
